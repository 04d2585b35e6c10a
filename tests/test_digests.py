"""Recorded digests: the same inputs build the same image, whatever the code's layout.

Recorded before the packages moved (issue 13) and checked since: the quickstart, built as its
pinned lock says (`tests/fixtures/quickstart.astro.lock`: Debian's packages and Airflow's wheels
by sha256), and the 1,000-DAG benchmark project (`benchmarks/build_bench.py`'s generator,
deterministic) on a small root filesystem this test writes byte for byte. A change that moves
either digest changes what users ship: it must be deliberate, and the digest recorded again.
If Debian's archive no longer serves a pinned package, the quickstart build fails naming it:
record a fresh lock then.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

from tests.helpers import REPO, run_cli

sys.path.insert(0, str(REPO / "benchmarks"))
import build_bench  # noqa: E402

# Recorded again in issues 15 and 19: dpkg configures packages.txt in the sandbox, the Python distributions are
# split into bucket layers.
QUICKSTART_DIGEST = "sha256:e5a142a5736d0ce8568aad28f61de55a7cc8e1b7708c6a7151ee850c361f01a8"
# Recorded again in issue 19: the `dags` rule splits the 1,003 DAG files into four layers (rules/dags.yaml `split`).
BENCHMARK_DIGEST = "sha256:1bf2db16d297d7d776b38930604fa0c01f8fe0e3f434d54db87f150071467885"


def small_rootfs(path: Path) -> None:
    """A root filesystem tar with fixed bytes: every header field set here."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in (("etc/passwd", b"root:x:0:0::/root:/bin/sh\nastro:x:50000:0::/usr/local/airflow:/bin/sh\n"),
                           ("etc/group", b"root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def test_the_benchmark_project_builds_to_its_recorded_digest(tmp_path, airbuild_cache):
    base = tmp_path / "rootfs.tar"
    small_rootfs(base)
    project = tmp_path / "bench"
    build_bench.generate_project(project, 1000, 50)
    result = json.loads(run_cli(["build", project, "--base", f"rootfs:{base}", "--json"]).stdout)
    assert result["manifest_digest"] == BENCHMARK_DIGEST


def test_the_quickstart_builds_to_its_recorded_digest(tmp_path, shared_store):
    project = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", project, ignore=shutil.ignore_patterns(".airbuild", "astro.lock"))
    shutil.copy(REPO / "tests" / "fixtures" / "quickstart.astro.lock", project / "astro.lock")
    proc = run_cli(["build", project, "--locked", "--no-validate", "--json"],
                   env={"AIRBUILD_CACHE_DIR": str(shared_store)}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["manifest_digest"] == QUICKSTART_DIGEST
