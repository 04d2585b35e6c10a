"""Fixtures for the real services the suite drives; scripts/test sets them up.

An unavailable service fails the test rather than skipping it: a skipped test
proves nothing.

The suite runs in parallel workers (pytest-xdist, `scripts/test` asks for one per core). A file's
tests stay on one worker (its module fixtures are made once); the files that run DAGs in Docker
sandbox containers share one worker, since they count those containers. Each worker is a child
subreaper with a runtime directory of its own, so its build servers and whatever they leave behind
are its descendants: `descendants()` tells a test's leftovers from another worker's live processes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import helpers, registry_servers

PR_SET_CHILD_SUBREAPER = 36
SHARED_WORKER = {"test_validate.py": "sandbox-containers", "test_sandbox_security.py": "sandbox-containers"}
# The longest groups (minutes on a 2-core machine), handed out first so that no worker is left with one of
# them at the end while the other idles.
LONGEST_FIRST = ("sandbox-containers", "test_debian_image.py", "test_buildkit.py", "test_init.py",
                 "test_quickstart.py", "test_astro_parity.py", "test_pip_parity.py", "test_sdist_build.py")


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a shell without job control inherits SIGINT ignored, and so
    # would every command it starts: the tests that press Ctrl-C (SIGINT) need it delivered.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("PYTEST_XDIST_WORKER") is None and getattr(config.option, "numprocesses", None):
        return  # xdist's controller: the workers run the tests
    # Orphans (a build server, a leaked sandbox) are reparented to this process, not to init.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Build servers are per runtime directory: this process's serve its own tests only.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix=f"airbuild-test-{worker}-")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `--dist loadgroup`: a file's tests on one worker (SHARED_WORKER: several files on one)."""
    groups = {}
    for item in items:
        groups[item] = SHARED_WORKER.get(item.path.name, item.path.name)
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    rank = {group: n for n, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item], len(rank)))  # stable: each file keeps its order


@pytest.fixture(scope="module")
def module_tmp(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """`module_tmp(name)`: a new directory for a file's shared fixtures (images, stores of GBs), removed
    when the file's tests are done, unless one failed: CI's disk holds the suite's peak, not its sum."""
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    """Path of the cached Debian bookworm rootfs tarball (see scripts/debian-rootfs)."""
    return helpers.debian_rootfs()


@pytest.fixture(scope="session")
def docker_client():
    """`docker(*args, check=True)`, once `docker info` has shown dockerd is reachable."""
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
        error = proc.stderr.strip() if proc.returncode else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    if error:
        pytest.fail(f"dockerd is not reachable ({error}): run the suite with scripts/test", pytrace=False)
    return helpers.docker


@pytest.fixture(scope="session")
def registry() -> str:
    """"host:port" of the plain-HTTP test registry, checked with GET /v2/."""
    address = os.environ.get("AIRBUILD_TEST_REGISTRY", "127.0.0.1:5000")
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=10):
            pass
    except OSError as exc:
        pytest.fail(f"no registry answers at {address} ({exc}): run the suite with scripts/test", pytrace=False)
    return address


@pytest.fixture(scope="session")
def shared_store() -> Path:
    """A store kept between runs for tests that need no clean cache: downloaded .debs and indexes
    are content-addressed, so reusing them is safe and saves the archive round trips."""
    path = Path(os.environ.get("AIRBUILD_TEST_STORE", Path.home() / ".cache" / "airbuild" / "test-store"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def airbuild_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty AIRBUILD_CACHE_DIR for one test."""
    cache = tmp_path / "airbuild-cache"
    cache.mkdir()
    monkeypatch.setenv("AIRBUILD_CACHE_DIR", str(cache))
    yield cache


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator:
    """`start_registry(auth="", tls=None)`: a fresh `docker-registry` on a free loopback port, stopped afterwards."""
    started: list[registry_servers.Registry] = []

    def start(**kwargs) -> registry_servers.Registry:
        registry = registry_servers.start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[registry_servers.TokenServer]:
    """A registry token server (RS256 JWTs) on loopback; `auth_config()` is the registry's `auth:` section."""
    (tmp_path / "token").mkdir()
    server = registry_servers.TokenServer(tmp_path / "token").start()
    yield server
    server.stop()
