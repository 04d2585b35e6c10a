"""What every deploy checks before it builds, wherever it ships (a registry or Astro).

Refused (exit 2) unless --force: a git tree with uncommitted or untracked changes under the
project (watch waives only that), DAG files that do not even compile, and with --pytest the
project's tests failing in the DAG sandbox. With --force each becomes a warning in the result.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.common.errors import InputError
from builder.common.progress import Progress
from builder.engine.build import BuildOptions, run_tests
from builder.validate.syntax import syntax_errors


class DeployRefused(InputError):
    """A deploy that would ship something unchecked or uncommitted (exit 2; --force overrides)."""


@dataclass
class GitState:
    commit: str | None
    dirty: list[str]
    message: str


def git_state(project: Path) -> GitState:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
    except OSError:
        return GitState(None, [], "")
    if head.returncode != 0:
        return GitState(None, [], "")
    status = git("status", "--porcelain", "--untracked-files=all", "--", ".")
    dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    message = git("log", "-1", "--format=%B").stdout.strip()
    return GitState(head.stdout.strip(), dirty, message)


def uncommitted(dirty: list[str]) -> str:
    """The problem a dirty tree is, naming its first files."""
    shown = ", ".join(dirty[:5]) + (f" (+{len(dirty) - 5} more)" if len(dirty) > 5 else "")
    return f"the git tree has uncommitted changes: {shown}"


def refuse_or_warn(problem: str, force: bool, warnings: list[str]) -> None:
    if not force:
        raise DeployRefused(problem + "; fix it, or deploy anyway with --force")
    warnings.append(problem + " (deployed with --force)")


def check_tree(project: Path, force: bool, allow_dirty: bool, warnings: list[str], progress: Progress) -> GitState:
    """The git and compile checks (quick, before anything is built); the git state for the record."""
    git = git_state(project)
    if git.dirty and not allow_dirty:
        refuse_or_warn(uncommitted(git.dirty), force, warnings)
    progress.step("checking DAG files")
    errors = syntax_errors(project)
    if errors:
        refuse_or_warn("DAG files do not compile:\n  " + "\n  ".join(errors), force, warnings)
    return git


def check_tests(options: BuildOptions, warnings: list[str]) -> None:
    """--pytest: the project's tests/ in the DAG sandbox must pass (or there are none)."""
    options.progress.step("running the project's tests in the sandbox")
    if not (options.project / "tests").is_dir():
        return
    code = run_tests(options, ["-q"], to_stderr=True)  # stdout is for deploy's own result
    if code not in (0, 5):  # 5: no tests collected
        refuse_or_warn(f"the project's tests failed in the sandbox (pytest exit {code}; pytest must be in "
                       "requirements.txt)", options.force, warnings)
