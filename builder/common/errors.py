"""Errors users see. Each carries the exit code the CLI returns for it."""

from __future__ import annotations

from pathlib import Path


class AirbuildError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return where + self.message


class InputError(AirbuildError):
    """Bad input: a manifest, Dockerfile, project tree or lock the user must fix (exit 2)."""

    exit_code = 2


class BuildError(AirbuildError):
    """The build itself failed (exit 1)."""

    exit_code = 1


class NotLocal(AirbuildError):
    """What a read-only `plan` cannot know without fetching layer blobs, resolving or building: the plan
    reports it for the rule that needed it. A build never meets it (it fetches and builds what it reads)."""

    exit_code = 1


class SetupError(AirbuildError):
    """airbuild's own installation or machine lacks something (a dependency's program): no edit of the
    project fixes it, so `watch` stops on it instead of waiting for a save (exit 1)."""

    exit_code = 1
