"""Progress on a terminal (stderr, via rich), silence when piped."""

from __future__ import annotations

import contextlib
import sys
import time


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
