"""packages.txt resolved as `apt-get install --no-install-recommends` resolves it, compared with the real apt.

Each case runs both on the same bookworm base: apt-get in a container (dockerd, the host network, this
machine's CA bundle, the base's sources switched to https) and `airbuild lock`. apt's answer is cached on
disk by the base's digest, the case and the archive's index dates, so an unchanged archive costs one
small InRelease fetch a suite. The full list real Astro projects carry is in
benchmarks/packages_bench.py; the suite keeps a medium list and the hard cases.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.projects import make_project

CACHE = Path.home() / ".cache" / "airbuild" / "fixtures" / "apt-answers"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
SUITES = ("https://deb.debian.org/debian/dists/bookworm/InRelease",
          "https://deb.debian.org/debian/dists/bookworm-updates/InRelease",
          "https://security.debian.org/debian-security/dists/bookworm-security/InRelease")
OLD_CURL = "7.88.1-10+deb12u5"   # bookworm's point-release curl, older than bookworm-security's
MEDIUM = ["libpq-dev", "git", "curl", "unixodbc-dev", "libsasl2-dev"]


def index_dates() -> list[str]:
    dates = []
    for url in SUITES:
        with urllib.request.urlopen(url, timeout=60) as response:
            text = response.read(4096).decode("utf-8", "replace")
        dates.append(re.search(r"^Date: (.*)$", text, re.MULTILINE).group(1))
    return dates


@pytest.fixture(scope="module")
def apt(debian_rootfs, docker_client):
    """`apt(packages, setup=[])`: what apt-get would install ({name: version}) or its error text, on the
    base after `setup` (apt-get install lines run first); `base(setup)`: that base as a rootfs tar."""
    digest = hashlib.sha256(debian_rootfs.read_bytes()).hexdigest()[:16]
    image = f"airbuild-test/bookworm-rootfs:{digest}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        docker_client("import", debian_rootfs, image)
    dates = index_dates()
    CACHE.mkdir(parents=True, exist_ok=True)
    prelude = ("sed -i s,http://,https://, /etc/apt/sources.list && apt-get update -qq >/dev/null 2>&1 && ")

    def container(script: str, *extra: str) -> subprocess.CompletedProcess:
        return docker_client("run", *extra, "--network", "host", "-v", f"{HOST_CA}:{HOST_CA}:ro",
                             image, "sh", "-c", prelude + script, check=False)

    def answer(packages: list[str], setup: tuple[str, ...] = ()) -> dict | str:
        key = hashlib.sha256(json.dumps([digest, packages, setup, dates]).encode()).hexdigest()[:24]
        path = CACHE / f"{key}.json"
        if not path.exists():
            first = "".join(f"apt-get install -y -qq --no-install-recommends {s} >/dev/null && " for s in setup)
            proc = container(first + "apt-get install -s -q --no-install-recommends " + " ".join(packages), "--rm")
            installs = dict(re.findall(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", proc.stdout, re.MULTILINE))
            path.write_text(json.dumps(installs if proc.returncode == 0 else proc.stdout + proc.stderr))
        return json.loads(path.read_text())

    def base(setup: tuple[str, ...]) -> Path:
        key = hashlib.sha256(json.dumps([digest, setup, dates]).encode()).hexdigest()[:24]
        tar = CACHE / f"base-{key}.tar"
        if not tar.exists():
            name = f"airbuild-fidelity-{key}"
            docker_client("rm", "-f", name, check=False)
            proc = container("".join(f"apt-get install -y -qq --no-install-recommends {s} >/dev/null && " for s in setup)
                             + "apt-get clean && rm -rf /var/lib/apt/lists/*", "--name", name)
            assert proc.returncode == 0, proc.stderr
            partial = tar.with_suffix(".partial")
            docker_client("export", "-o", partial, name)
            docker_client("rm", "-f", name)
            partial.rename(tar)
        return tar

    answer.base = base
    return answer


def airbuild(tmp_path: Path, base: Path, packages: list[str], store: Path) -> dict | str:
    project = make_project(tmp_path / "project")
    (project / "packages.txt").write_text("".join(f"{p}\n" for p in packages))
    proc = run_cli(["lock", project, "--base", f"rootfs:{base}"], env={"AIRBUILD_CACHE_DIR": str(store)},
                   check=False)
    if proc.returncode:
        return proc
    entries = json.loads((project / "astro.lock").read_text())["debian"]["entries"]
    return {e["name"]: e["version"] for e in entries}


def test_a_medium_astro_list_installs_what_apt_installs(apt, debian_rootfs, tmp_path, shared_store):
    expected = apt(MEDIUM)
    assert isinstance(expected, dict) and len(expected) > 25, expected
    assert airbuild(tmp_path, debian_rootfs, MEDIUM, shared_store) == expected


def test_a_pin_that_forces_another_alternative(apt, debian_rootfs, tmp_path, shared_store):
    """libcurlpp-dev needs `libcurl4-openssl-dev | libcurl4-dev`; pinning libcurl4 to the point release
    rules out the first (it needs libcurl4 at the security update's version): the solver must take
    another provider, as apt does, where a greedy resolver fails."""
    packages = ["libcurlpp-dev", f"libcurl4={OLD_CURL}"]
    expected = apt(packages)
    assert isinstance(expected, dict), expected
    assert expected["libcurl4"] == OLD_CURL and "libcurl4-openssl-dev" not in expected
    assert airbuild(tmp_path, debian_rootfs, packages, shared_store) == expected


def test_an_upgrade_solves_the_bases_reverse_dependencies_again(apt, tmp_path, shared_store):
    """The base has curl and libcurl4 at the point release (curl needs libcurl4 at exactly its version);
    libcurl4-openssl-dev needs the newer libcurl4, so apt upgrades libcurl4 and curl with it."""
    setup = (f"curl={OLD_CURL} libcurl4={OLD_CURL}",)
    base = apt.base(setup)
    expected = apt(["libcurl4-openssl-dev"], setup)
    assert isinstance(expected, dict) and "curl" in expected and expected["libcurl4"] != OLD_CURL, expected
    assert airbuild(tmp_path, base, ["libcurl4-openssl-dev"], shared_store) == expected


def test_two_requested_packages_that_conflict_are_refused_by_both(apt, debian_rootfs, tmp_path, shared_store):
    packages = ["libcurl4-openssl-dev", "libcurl4-gnutls-dev"]
    refused = apt(packages)
    assert isinstance(refused, str) and "libcurl4-gnutls-dev" in refused, refused
    proc = airbuild(tmp_path, debian_rootfs, packages, shared_store)
    assert not isinstance(proc, dict) and proc.returncode == 2
    assert re.search(r"packages.txt:[12]: cannot install .*libcurl4-(openssl|gnutls)-dev", proc.stderr), proc.stderr
    assert "conflicts with" in proc.stderr
