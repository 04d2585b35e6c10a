"""Read a Dockerfile with BuildKit's own parser (the `dockerfile` package) into typed instructions."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from builder.common.errors import InputError
from builder.common.text import read_utf8

NATIVE = {"ARG", "ENV", "LABEL", "USER", "WORKDIR", "EXPOSE", "CMD", "ENTRYPOINT", "COPY", "SHELL"}
RUNS_A_COMMAND = {"RUN"}  # the instructions the BuildKit backend runs in a container
UNSUPPORTED = {"ADD", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "ONBUILD"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: tuple[str, ...]
    flags: tuple[str, ...]
    json_form: bool
    line: int
    original: str
    heredoc: bool = False
    trigger: int = 0  # a base image's ONBUILD trigger (its 1-based position there), run right after FROM; 0: not one

    def flag(self, name: str) -> str | None:
        prefix = f"--{name}="
        return next((f[len(prefix):] for f in self.flags if f.startswith(prefix)), None)

    @property
    def label(self) -> str:
        """Unique within the build, for step names: KEYWORD@LINE, or ONBUILD-KEYWORD#N for a trigger."""
        return f"ONBUILD-{self.keyword}#{self.trigger}" if self.trigger else f"{self.keyword}@{self.line}"

    def describe(self) -> str:
        """For messages: the keyword, or which trigger of the base image it is."""
        return f"the base image's ONBUILD trigger {self.trigger} `{self.original}`" if self.trigger else self.keyword


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    base_ref: str | None  # after substituting the ARGs declared before FROM
    base_line: int | None
    instructions: tuple[Instruction, ...]  # everything after FROM
    global_args: tuple[tuple[str, str], ...] = ()  # ARGs declared before FROM, build args applied

    @property
    def runs_commands(self) -> bool:
        return any(inst.keyword in RUNS_A_COMMAND for inst in self.instructions)


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> Dockerfile:
    """Instructions are checked for what every backend needs here; `check_instruction` does the rest."""
    build_args = build_args or {}
    if not path.exists():  # the dockerfile package reports a missing file as a GoIOError, not FileNotFoundError
        return Dockerfile(path=path, base_ref=None, base_line=None, instructions=())
    # A Go runtime (threads of its own): loaded by the process that parses, never by the build server, which forks.
    import dockerfile

    read_utf8(path, "Dockerfile")  # the parser would raise UnicodeDecodeError: say which line instead
    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoIOError as exc:
        raise InputError(f"cannot read the Dockerfile: {exc}", path=path) from None
    except dockerfile.GoParseError as exc:
        raise InputError(f"cannot parse Dockerfile: {exc}", path=path) from exc
    except UnicodeDecodeError:  # the Go parser split a character it takes for a space (U+0085 ...)
        raise InputError("cannot parse Dockerfile: it holds a Unicode space or control character the parser "
                         "cuts in half (U+0085, U+00A0 ...); use plain spaces", path=path) from None

    global_args: dict[str, str] = {}
    base_ref = base_line = None
    body: list[Instruction] = []
    for command in commands:
        inst = Instruction(
            keyword=command.cmd.upper(),
            args=tuple(command.value),
            flags=tuple(command.flags),
            json_form=command.json,
            line=command.start_line,
            original=command.original,
            heredoc=bool(command.heredocs),
        )
        if inst.keyword == "FROM":
            if base_ref is not None:
                raise InputError(
                    "multi-stage builds (a second FROM) are not supported yet",
                    path=path, line=inst.line)
            if not inst.args:
                raise InputError("FROM needs an image reference", path=path, line=inst.line)
            if len(inst.args) not in (1, 3):
                raise InputError(f"cannot read FROM {' '.join(inst.args)!r}: expected `FROM image [AS name]`",
                                 path=path, line=inst.line)
            base_ref = expand(inst.args[0], global_args)
            base_line = inst.line
        elif base_ref is None:
            if inst.keyword != "ARG":
                raise InputError(f"{inst.keyword} before FROM: only ARG may come first", path=path, line=inst.line)
            for name, value in parse_arg(inst):
                global_args[name] = build_args.get(name, expand(value or "", global_args))
        else:
            if inst.keyword not in NATIVE | RUNS_A_COMMAND | UNSUPPORTED | {"MAINTAINER"}:
                raise InputError(f"unknown instruction {inst.keyword}", path=path, line=inst.line)
            body.append(inst)
    return Dockerfile(path=path, base_ref=base_ref, base_line=base_line, instructions=tuple(body),
                      global_args=tuple(global_args.items()))


def parse_trigger(text: str, index: int, from_line: int | None) -> Instruction:
    """A base image's ONBUILD trigger (config `OnBuild`, e.g. "RUN touch /x") as the instruction it runs."""
    import dockerfile  # a Go runtime: never in the build server, which forks (see parse_dockerfile)

    try:
        commands = dockerfile.parse_string(text)
    except (dockerfile.GoParseError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse the base image's ONBUILD trigger {index} `{text}`: {exc}") from None
    command = commands[0]
    keyword = command.cmd.upper()
    if len(commands) != 1 or keyword in ("FROM", "ONBUILD", "MAINTAINER") or \
            keyword not in NATIVE | RUNS_A_COMMAND | UNSUPPORTED:
        raise InputError(f"the base image's ONBUILD trigger {index} `{text}` is not an instruction a build can run")
    return Instruction(keyword=keyword, args=tuple(command.value), flags=tuple(command.flags), json_form=command.json,
                       line=from_line or 0, original=command.original, heredoc=bool(command.heredocs), trigger=index)


def check_instruction(inst: Instruction, path: Path, backend: str) -> None:
    """An error naming the line for what `backend` cannot do."""
    if inst.keyword in RUNS_A_COMMAND:
        if backend == "native":
            raise InputError(
                f"{inst.keyword} needs a container to run in: the native backend cannot run it. Use the BuildKit "
                "backend for it (`backend: auto` in astro.yaml, the default, or --backend auto).",
                path=path, line=inst.line)
        if inst.heredoc:
            raise InputError(f"{inst.keyword} with a here-document is not supported", path=path, line=inst.line)
        return
    if inst.keyword in UNSUPPORTED:
        raise InputError(f"{inst.keyword} is not supported yet (by either backend). airbuild supports "
                         f"{', '.join(sorted(NATIVE | RUNS_A_COMMAND))} and FROM.", path=path, line=inst.line)
    if inst.keyword == "SHELL" and not inst.json_form:
        raise InputError('SHELL takes a JSON array, e.g. SHELL ["/bin/bash", "-c"]', path=path, line=inst.line)
    if inst.keyword == "COPY" and backend == "buildkit":  # BuildKit reads the flags; one stage only
        if inst.flag("from") is not None:
            raise InputError("COPY --from needs a multi-stage build, which is not supported yet", path=path,
                             line=inst.line)
        if len(inst.args) < 2 or inst.heredoc:
            raise InputError("COPY needs at least one source and a destination", path=path, line=inst.line)
    elif inst.keyword == "COPY":
        if inst.heredoc:
            raise InputError("COPY with a here-document is not supported natively yet", path=path, line=inst.line)
        unsupported = [f for f in inst.flags if not f.startswith(("--chown=", "--chmod="))]
        if unsupported:
            raise InputError(f"COPY {unsupported[0]} is not supported natively (only --chown and --chmod)",
                             path=path, line=inst.line)
        if len(inst.args) < 2:
            raise InputError("COPY needs at least one source and a destination", path=path, line=inst.line)


def parse_arg(inst: Instruction) -> list[tuple[str, str | None]]:
    out = []
    for item in inst.args:
        name, sep, value = item.partition("=")
        out.append((name, unquote(value) if sep else None))
    return out


def pairs(inst: Instruction, variables: dict[str, str]) -> list[tuple[str, str]]:
    """KEY VALUE pairs of ENV or LABEL, quotes removed and variables expanded."""
    args = inst.args
    if len(args) % 2:
        raise InputError(f"cannot read {inst.original!r}: expected KEY=VALUE pairs", line=inst.line)
    return [(unquote(expand(args[i], variables)), unquote(expand(args[i + 1], variables)))
            for i in range(0, len(args), 2)]


def unquote(text: str) -> str:
    if not text or not any(c in text for c in "\"'\\"):
        return text
    try:
        return "".join(shlex.split(text, posix=True)) if text.strip() else text
    except ValueError:
        return text


_VARIABLE = re.compile(r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: dict[str, str]) -> str:
    """Docker's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}, \\$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("bare")
        value = variables.get(name, "")
        op = match.group("op")
        if op == "-":
            return value or match.group("word")
        if op == "+":
            return match.group("word") if value else ""
        return value

    return _VARIABLE.sub(substitute, text)
