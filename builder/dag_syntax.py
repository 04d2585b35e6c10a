"""The validation a deploy runs until the DAG sandbox lands: every Python file under dags/ must compile."""

from __future__ import annotations

from pathlib import Path


def syntax_errors(project: Path) -> list[str]:
    """`dags/x.py:LINE: message` for each DAG file Python cannot compile."""
    dags = project / "dags"
    errors = []
    if not dags.is_dir():
        return errors
    for path in sorted(dags.rglob("*.py")):
        rel = path.relative_to(project)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        try:
            compile(path.read_bytes(), str(rel), "exec", dont_inherit=True)
        except SyntaxError as exc:
            errors.append(f"{rel}:{exc.lineno or 0}: {exc.msg}")
        except (ValueError, OSError) as exc:
            errors.append(f"{rel}: {exc}")
    return errors
