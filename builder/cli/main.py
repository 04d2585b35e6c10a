"""`airbuild`: parse the command line, answer a no-op build from its stamp, else run the command.

Errors are one line (exit 1: the build failed, 2: bad input, 70: a bug of ours, with a log), never a
traceback; secrets are masked in everything printed.
"""

from __future__ import annotations

import errno
import importlib
import json
import sys
import time
from pathlib import Path

from builder.cli.commands import MODULES
from builder.cli.output import print_build, print_validation, show
from builder.cli.parser import build_args, make_parser, validation_skipped
from builder.common import crash, masking
from builder.common.errors import AirbuildError
from builder.common.paths import OUTPUT_DIR, default_store_dir
from builder.engine import stamp
from builder.project.discover import find_project

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

_prebuilt_parser = None  # the build server's, made once before it forks (building it costs ~8 ms a command)


def prebuild_parser() -> None:
    global _prebuilt_parser
    _prebuilt_parser = make_parser()


def main(argv: list[str] | None = None) -> int:
    masking.install()  # secrets of the caller's environment never reach what we print
    parser = _prebuilt_parser or make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after -- belongs to the command being wrapped (pytest)
        split = argv.index("--")
        argv, passthrough = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)
    args.passthrough = passthrough
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        args = _with_project(args)
        if args.command == "build" and _answered_by_stamp(args):
            return EXIT_OK
        # A command's module imports the stages it drives (pydantic, the engine, the registry client...):
        # only that one, only now; an unchanged project's build was answered above without any.
        module = importlib.import_module(f"builder.cli.commands.{MODULES[args.command]}")
        return getattr(module, f"cmd_{args.command}")(args)
    except AirbuildError as exc:
        report = getattr(exc, "report", None)
        if report is not None and not getattr(args, "json", False):
            print_validation(report.to_json())
        _error(exc.render(), getattr(args, "json", False), exc.exit_code,
               {"validation": report.to_json()} if report is not None else {})
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        return EXIT_OK
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _internal_error(exc, argv, getattr(args, "json", False))
        _error(_disk_full(exc), getattr(args, "json", False), EXIT_FAILED)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("airbuild: interrupted; the store and outputs are as they were before this step", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours, not the user's input: no traceback on the terminal
        return _internal_error(exc, argv, getattr(args, "json", False))


def _disk_full(exc: OSError) -> str:
    """A full disk is the machine's state, not a bug: what was being written, and what to do."""
    where = f" writing {exc.filename}" if exc.filename else ""
    what = "no space left on the device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    return (f"{what}{where}; nothing half-written was kept. Free space, or "
            f"shrink the store: airbuild cache gc --max-size SIZE (store: {default_store_dir()})")


def _with_project(args):
    """The project a command without a PROJECT argument works on: the nearest one from here up."""
    if "project" in args and args.project is None:
        args.project = find_project(Path.cwd())
    if args.command == "inspect" and args.image is None:
        args.image = find_project(Path.cwd()) / OUTPUT_DIR / "image"
    return args


def _answered_by_stamp(args) -> bool:
    """An unchanged project's build, printed from the last build's stamp (and the walk it made kept for
    the build that runs otherwise)."""
    args.started_ns = time.time_ns()
    settings = stamp.settings(args.project.resolve(), args.base, args.oci, args.archive, args.locked,
                              validation_skipped(args), args.force, args.backend, build_args(args.build_arg),
                              tuple(args.secret))
    result, args.scanned = stamp.try_noop(args.project.resolve(), settings)
    if result is None:
        return False
    show(result, args.json, print_build)
    return True


def _internal_error(exc: Exception, argv: list[str], as_json: bool) -> int:
    """`airbuild: internal error: Type: message`, the traceback in a log file (builder/common/crash.py), exit 70."""
    log = crash.write_log(exc, argv)
    message = crash.summary(exc)
    if as_json:
        print(json.dumps({"error": message, "exit_code": crash.EXIT_INTERNAL, "log": str(log) if log else None}))
    print(f"airbuild: {message}\nairbuild: {crash.where(log)}", file=sys.stderr)
    return crash.EXIT_INTERNAL


def _error(message: str, as_json: bool, code: int, extra: dict | None = None) -> None:
    if as_json:
        print(json.dumps({"error": message, "exit_code": code, **(extra or {})}))
    print(f"airbuild: error: {message}", file=sys.stderr)
