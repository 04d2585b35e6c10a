"""Astro's own parse test: `.astro/test_dag_integrity_default.py`, run as `astro dev parse` runs it.

Every `astro dev init` project has the file, and teams edit it to add their own rules. When
it is there, `parse` (and `deploy`) also run it with the image's pytest in the DAG sandbox, from
the project's root (the file reads `.astro/dag_integrity_exceptions.txt` relative to it), and
report each test case beside the per-file results. pytest writes its JUnit report on our stdout
(between its own terminal lines), so nothing in the sandbox is writable for it but its `/tmp`.
Results are cached by the test file, the exceptions file, the DAGs and the environment.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from builder.common import masking

TEST_FILE = ".astro/test_dag_integrity_default.py"
EXCEPTIONS_FILE = ".astro/dag_integrity_exceptions.txt"
MESSAGE_CHARS = 64 << 10
VERSION = "3"  # of how results are read: part of the cache key


@dataclass(frozen=True)
class AstroTestCase:
    name: str
    outcome: str    # passed | failed | error | skipped
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")

    def to_json(self) -> dict:
        return {"name": self.name, "outcome": self.outcome, "message": self.message}


def present(project: Path) -> bool:
    return (project / TEST_FILE).is_file()


def inputs_hash(project: Path) -> str:
    digest = hashlib.sha256()
    for rel in (TEST_FILE, EXCEPTIONS_FILE):
        path = project / rel
        digest.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-") + b"\0")
    return digest.hexdigest()


def argv() -> list[str]:
    return ["python3", "-m", "pytest", "-qq", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
            "--junitxml=/dev/stdout", TEST_FILE]


def _message(summary: str, longrepr: str) -> str:
    """What failed, as pytest shows it: its `E` lines (the exception and the assertion), else the summary."""
    explained = [line[1:].strip() for line in longrepr.splitlines() if line.startswith("E ")]
    return "\n".join(explained) if explained else (summary or longrepr).strip()


def read_results(stdout: str, returncode: int, stderr: str) -> list[AstroTestCase]:
    """The test cases of pytest's JUnit report; no report at all is one failed case saying why."""
    start = stdout.find("<?xml")
    if start < 0:
        if "No module named pytest" in stderr:
            return [AstroTestCase(TEST_FILE, "skipped", "pytest is not installed in the image (add it to "
                                                        "requirements.txt to run Astro's parse test)")]
        return [AstroTestCase(TEST_FILE, "error", f"pytest ended without a report (exit {returncode}): "
                                                  f"{stderr.strip()[-2000:]}")]
    try:
        end = stdout.find("</testsuites>", start)
        root = ET.fromstring(stdout[start:end + len("</testsuites>")] if end >= 0 else stdout[start:])
    except ET.ParseError as exc:
        return [AstroTestCase(TEST_FILE, "error", f"pytest's report could not be read: {exc}")]
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = "failed" if kind == "failure" else kind
                message = _message(node.get("message") or "", node.text or "")
                break
        cases.append(AstroTestCase(case.get("name", "?"), outcome, masking.text(message[:MESSAGE_CHARS])))
    if not cases and returncode not in (0, 5):
        cases.append(AstroTestCase(TEST_FILE, "error", f"pytest failed before running a test (exit {returncode})"))
    return cases
