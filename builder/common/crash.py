"""An exception airbuild did not expect (a bug, not bad input): one line for the user, the traceback in a log.

The log goes under the store's directory (`$AIRBUILD_CACHE_DIR/logs`, else the user cache
directory's `airbuild/logs`); the newest `KEEP` logs are kept. The exit code is 70
(EX_SOFTWARE in sysexits.h: an internal software error), apart from 1 (the build failed) and
2 (bad input), so scripts can tell a bug from a failing build.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path

from builder import __version__
from builder.common import masking
from builder.common.paths import default_store_dir

EXIT_INTERNAL = 70
KEEP = 50


def log_dir() -> Path:
    try:
        return default_store_dir() / "logs"
    except Exception:  # the store's location itself failed (a broken install): the log must still be written
        return Path(tempfile.gettempdir()) / "airbuild-logs"


def write_log(exc: BaseException, argv: list[str] | None = None) -> Path | None:
    """The log file holding `exc`'s traceback, or None when it cannot be written (the message says so)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    directory = log_dir()
    path = directory / f"internal-{now:%Y%m%dT%H%M%S}-{os.getpid()}.log"
    text = (f"airbuild {__version__} internal error at {now:%Y-%m-%dT%H:%M:%SZ}\n"
            f"command: airbuild {' '.join(sys.argv[1:] if argv is None else argv)}\n"
            f"python: {sys.version.split()[0]} ({sys.executable}) on {platform.platform()}\n\n"
            + "".join(traceback.format_exception(exc)))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(masking.text(text))  # a traceback's locals and messages may carry a secret
        _prune(directory)
    except OSError:
        return None
    return path


def summary(exc: BaseException) -> str:
    """`internal error: Type: first line of the message`."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}: {message}" if message else f"internal error: {type(exc).__name__}"


def where(log: Path | None) -> str:
    if log is None:
        return f"the traceback could not be written under {log_dir()}"
    return f"the full traceback is in {log}; please report it with that file"


def _prune(directory: Path) -> None:
    logs = sorted(directory.glob("internal-*.log"))
    for old in logs[:-KEEP]:
        old.unlink(missing_ok=True)
