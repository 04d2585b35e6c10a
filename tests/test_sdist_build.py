"""An sdist that compiles C code (psycopg2 publishes no Linux wheel), built in the image's own sandbox.

On the Debian bookworm base, packages.txt installs the compiler and headers (build-essential, libpq-dev,
python3-dev for Debian's python3) and requirements.txt names psycopg2: the sdist is compiled by the image's
python3 in bubblewrap, and the image imports it (unpacked by umoci, run in bubblewrap without network). The wheel is
kept in the store: another project with the same base, packages and sdist installs it without compiling.
Compiling it again (the wheel and the Python layers forgotten) gives the same image digest. Without a compiler in
the image, the build stops with a clear error.

Stores are fresh per run; the downloaded .deb files, indexes and the sdist (content-addressed blobs) are
shared with the suite's kept store, so a warm machine does not fetch them again.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.helpers import rule_layers, run, run_cli, tool
from tests.projects import make_project, set_age
from tests.package_index import PackageIndex

PACKAGES = ["build-essential", "libpq-dev", "python3-dev"]
SDIST_ONLY = "psycopg2==2.9.10"  # psycopg2 publishes wheels for Windows and macOS only


def link_blobs(source: Path, dest: Path) -> None:
    """Content-addressed blobs from one store into another (hard links where they can be)."""
    source, dest = source / "blobs" / "sha256", dest / "blobs" / "sha256"
    if not source.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for blob in source.iterdir():
        if len(blob.name) != 64 or (dest / blob.name).exists():
            continue
        try:
            os.link(blob, dest / blob.name)
        except OSError:
            shutil.copyfile(blob, dest / blob.name)


def project(root: Path, packages: list[str], requirements: list[str]) -> Path:
    make_project(root)
    (root / "packages.txt").write_text("".join(f"{p}\n" for p in packages))
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    return root


def build(path: Path, store: Path, base: Path, *extra: str, check: bool = True):
    proc = run_cli(["build", path, "--base", f"rootfs:{base}", "--no-validate", "--json", *extra],
                   env={"AIRBUILD_CACHE_DIR": str(store)}, check=False)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def builds(module_tmp, debian_rootfs, shared_store):
    """(first build, another project's build in the same store, a build compiling the sdist again, the
    store, a scratch directory)."""
    work = module_tmp("sdist")
    store = work / "store-1"
    link_blobs(shared_store, store)
    first_project = project(work / "first", PACKAGES, [SDIST_ONLY])
    first = build(first_project, store, debian_rootfs)
    link_blobs(store, shared_store)  # the next run finds the .deb files and the sdist
    other = build(project(work / "other", PACKAGES, [SDIST_ONLY, "six==1.16.0"]), store, debian_rootfs)
    # Forget the built wheel and the Python layers (not the Debian layer below: its own tests show it
    # reproducible), so the next build compiles again from nothing the first one made.
    shutil.rmtree(store / "built-wheels")
    for layer in rule_layers(first, "python-requirements"):
        (store / "layers" / f"{layer['key']}.json").unlink(missing_ok=True)
    second = build(first_project, store, debian_rootfs, "--locked")
    return first, other, second, store, work


def built_notes(result: dict) -> list[str]:
    return [note for note in result["notes"] if "from its sdist in the image's sandbox" in note]


def test_the_sdist_is_compiled_in_the_sandbox_and_the_image_imports_it(builds):
    first, _, _, _, work = builds
    assert len(built_notes(first)) == 1 and "psycopg2-2.9.10-cp311-cp311-linux_x86_64.whl" in built_notes(first)[0], \
        first["notes"]
    bundle = work / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{first['oci_layout']}:{first['tag']}", bundle])
    proc = run([tool("bwrap"), "--ro-bind", bundle / "rootfs", "/", "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "/usr/bin/python3", "-c",
                "import psycopg2, psycopg2.extensions; print(psycopg2.__libpq_version__, psycopg2.__version__)"])
    libpq, version = proc.stdout.split()[:2]
    assert int(libpq) >= 150000 and version.startswith("2.9.10"), proc.stdout


def test_another_project_with_the_same_inputs_takes_the_wheel_from_the_store(builds):
    _, other, _, _, _ = builds
    assert not built_notes(other), other["notes"]
    assert any(note.startswith("psycopg2 2.9.10: psycopg2-2.9.10-cp311-cp311-linux_x86_64.whl, built from its "
                               "sdist before, from the store") for note in other["notes"]), other["notes"]
    assert any(not layer["cached"] for layer in rule_layers(other, "python-requirements"))


def test_compiling_again_gives_the_same_image(builds):
    first, _, second, _, _ = builds
    assert len(built_notes(second)) == 1, second["notes"]  # compiled again, not taken from the store
    assert second["manifest_digest"] == first["manifest_digest"]


def test_without_a_compiler_the_error_says_what_to_add(builds, debian_rootfs):
    _, _, _, store, work = builds
    proc = build(project(work / "no-compiler", [], [SDIST_ONLY]), store, debian_rootfs, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = next(line for line in proc.stderr.splitlines() if "error:" in line)
    assert "psycopg2 2.9.10" in message and "no C compiler" in message and "build-essential" in message, message


# An sdist whose backend asks for a requirement only when run (setuptools' setup_requires): the build
# environment lacks it at first; the build resolves it, fetches it and runs again.
ASKING_SETUP = """\
import sys
from setuptools import setup
if "bdist_wheel" in sys.argv:
    import six  # there only when the build installed what setup_requires asks for
setup(name="asks-at-build", version="1.0", py_modules=["asks_at_build"], setup_requires=["six==1.16.0"])
"""


def sdist_bytes(name: str, version: str, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    top = f"{name}-{version}"
    files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", **files}
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def sdist_index():
    """A simple index on loopback holding one sdist (asks-at-build 1.0): its URL."""
    filename = "asks_at_build-1.0.tar.gz"
    data = sdist_bytes("asks_at_build", "1.0", {"setup.py": ASKING_SETUP, "asks_at_build.py": "ANSWER = 42\n"})
    index = PackageIndex([(filename, data)])
    yield index.url
    index.close()


def test_what_the_backend_asks_for_when_run_is_fetched_and_the_build_runs_again(tmp_path, debian_rootfs,
                                                                                 shared_store, sdist_index):
    store = tmp_path / "store"
    link_blobs(shared_store, store)
    first = project(tmp_path / "first", [], ["asks-at-build==1.0"])
    (first / "astro.yaml").write_text(f"extra_index_urls: [{sdist_index}]\n")
    set_age(first, 3600)
    result = build(first, store, debian_rootfs)
    assert any("built asks_at_build-1.0-py3-none-any.whl from its sdist" in n for n in result["notes"]), \
        result["notes"]
    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{result['oci_layout']}:{result['tag']}", bundle])
    assert (bundle / "rootfs/usr/local/lib/python3.11/dist-packages/asks_at_build.py").read_text() == "ANSWER = 42\n"

    other = project(tmp_path / "other", [], ["asks-at-build==1.0", "six==1.16.0"])
    (other / "astro.yaml").write_text(f"extra_index_urls: [{sdist_index}]\n")
    set_age(other, 3600)
    again = build(other, store, debian_rootfs)  # what it asked for is now part of its build environment up front
    assert not built_notes(again) and any("built from its sdist before" in n for n in again["notes"]), again["notes"]
