"""The validation a deploy runs until the DAG sandbox lands: every Python file under dags/ must compile.

Files that compiled before and whose stat signature is unchanged are not read again
(`.airbuild/dag-syntax.json`, per Python version; a file changed within the racy margin of
the check is not remembered).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from builder.common.atomic import atomic_write_bytes
from builder.common.paths import OUTPUT_DIR
from builder.project.statcache import RACY_MARGIN_NS

CACHE = "dag-syntax.json"


def syntax_errors(project: Path) -> list[str]:
    """`dags/x.py:LINE: message` for each DAG file Python cannot compile."""
    dags = project / "dags"
    if not dags.is_dir():
        return []
    cache_path = project / OUTPUT_DIR / CACHE
    try:
        cache = json.loads(cache_path.read_bytes())
        known = cache["files"] if cache.get("python") == sys.version else {}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        known = {}
    horizon = time.time_ns() - RACY_MARGIN_NS
    good: dict[str, str] = {}
    errors = []
    for path in sorted(dags.rglob("*.py")):
        rel = path.relative_to(project)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        st = path.stat()
        signature = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        if known.get(str(rel)) == signature:
            good[str(rel)] = signature
            continue
        try:
            compile(path.read_bytes(), str(rel), "exec", dont_inherit=True)
        except SyntaxError as exc:
            errors.append(f"{rel}:{exc.lineno or 0}: {exc.msg}")
            continue
        except (ValueError, OSError) as exc:
            errors.append(f"{rel}: {exc}")
            continue
        if st.st_mtime_ns < horizon and st.st_ctime_ns < horizon:
            good[str(rel)] = signature
    if good != known and cache_path.parent.is_dir():  # made by a build, with its .gitignore: never dirties git
        atomic_write_bytes(cache_path, json.dumps({"python": sys.version, "files": good}).encode(), fsync=False)
    return errors
