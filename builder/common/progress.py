"""Progress on a terminal (stderr, via rich), silence when piped; transfers as bars or plain lines."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterator


class Progress:
    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._console = None
        self._started = time.monotonic()

    def _out(self):
        if self._console is None:
            from rich.console import Console  # rich (~20 ms): only once something is shown on a terminal

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def step(self, message: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self._started
            self._out().print(f"[dim]{elapsed:6.2f}s[/dim] {message}")

    def status(self, message: str):
        """A spinner for long work (a context manager)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return self._out().status(message)


# -- transfers: bytes moved, with rate and what is left ------------------------------------------

MODE_ENV = "AIRBUILD_PROGRESS"   # bar | lines | off: overrides what the command chose (tests force a bar)
LINE_EVERY_S = 5.0
_mode = "off"                    # until a command says: library callers stay silent


def configure(json_output: bool) -> None:
    """Transfers show a bar on a terminal, plain lines on stderr otherwise, nothing with --json."""
    global _mode
    _mode = "off" if json_output else ("bar" if sys.stderr.isatty() else "lines")


def transfer_mode() -> str:
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    return forced if forced in ("bar", "lines", "off") else _mode


def announce(message: str) -> None:
    """A line on stderr about long work inside a build (an sdist compiling), unless output is --json or off."""
    if transfer_mode() != "off":
        print(message, file=sys.stderr, flush=True)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


class Meter:
    """Counts bytes of one transfer (thread-safe); `shrink` takes out what turned out not to need moving."""

    def __init__(self, description: str, total: int, mode: str):
        self.description = description
        self.total = total
        self.done = 0
        self.mode = mode
        self._lock = threading.Lock()
        self._started = self._last_line = time.monotonic()
        self._bar = self._task = None
        if mode == "bar":
            # rich only when a bar is drawn: a piped or --json command never pays its import
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress as RichProgress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)

            console = Console(stderr=True, force_terminal=True if os.environ.get(MODE_ENV) == "bar" else None)
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()
        elif mode == "lines":
            print(f"{description}: {_size(total)}", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
            elif self.mode == "lines" and time.monotonic() - self._last_line >= LINE_EVERY_S:
                self._last_line = time.monotonic()
                print(self._line(), file=sys.stderr, flush=True)

    def shrink(self, n: int) -> None:
        with self._lock:
            self.total = max(self.done, self.total - n)
            if self._bar is not None:
                self._bar.update(self._task, total=self.total)

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.done / elapsed
        left = max(self.total - self.done, 0)
        eta = f", about {left / rate:.0f} s left" if rate > 0 and left else ""
        return f"{self.description}: {_size(self.done)} of {_size(self.total)} at {_size(rate)}/s{eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.mode == "lines":
            elapsed = time.monotonic() - self._started
            print(f"{self.description}: {_size(self.done)} in {elapsed:.1f} s "
                  f"({_size(self.done / max(elapsed, 1e-6))}/s)", file=sys.stderr, flush=True)


@contextlib.contextmanager
def transfers(description: str, total: int) -> Iterator[Meter | None]:
    """A Meter for a transfer of about `total` bytes, or None when nothing is shown."""
    mode = transfer_mode()
    if mode == "off":
        yield None
        return
    meter = Meter(description, total, mode)
    try:
        yield meter
    finally:
        meter.close()
