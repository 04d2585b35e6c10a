"""Hostile base images (tests/hostile_images.py): `..` in paths, symlinks out of the root (absolute and
relative) with a file written through them, hard links out, device nodes, 100,000 files, a 10 GB sparse
file. Each is refused with a clear error or contained; nothing is written outside the store (a sentinel
directory beside it stays as it was), and memory stays bounded.

Driven in-process through what a build calls (bases.layout / bases.archive into the store, then
layers.unpack and layers.read), plus builds through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from builder.bases.archive import import_archive
from builder.bases.layout import from_oci_layout
from builder.common.errors import AirbuildError, InputError
from builder.layers.read import find_files
from builder.layers.unpack import in_root, unpacked
from builder.oci.descriptors import Platform
from builder.store.store import Store
from tests import hostile_images as hi
from tests.helpers import REPO, run_cli
from tests.projects import make_project

PLATFORM = Platform("linux", "amd64")
UP = "../" * 16  # enough to leave any temp directory


@pytest.fixture
def sentinel(tmp_path: Path):
    """A directory outside the store that no hostile image may touch; checked after the test."""
    directory = tmp_path / "sentinel"
    directory.mkdir()
    (directory / "keep").write_text("untouched")
    yield directory
    assert sorted(p.name for p in directory.iterdir()) == ["keep"], "something was written outside the store"
    assert (directory / "keep").read_text() == "untouched"


def base_from(tmp_path: Path, layers: list[bytes], how: str = "oci"):
    store = Store(tmp_path / "store")
    if how == "oci":
        hi.oci_layout(tmp_path / "layout", layers)
        return store, from_oci_layout(tmp_path, "layout", store, PLATFORM)
    return store, import_archive(store, hi.docker_archive(tmp_path / "image.tar", layers))


def unpack_outcome(store: Store, base) -> tuple[Path | None, AirbuildError | None]:
    try:
        return unpacked(store, base.layers), None
    except AirbuildError as exc:
        return None, exc


@pytest.mark.parametrize("how", ["oci", "docker-archive"])
def test_dotdot_and_absolute_paths_stay_inside(tmp_path, sentinel, how):
    out = str(sentinel).lstrip("/")
    layer = hi.layer([hi.entry("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
                      hi.entry(f"{UP}{out}/dotdot", b"evil"), hi.entry(f"a/{UP}{out}/middle", b"evil"),
                      hi.entry(f"/{out}/absolute", b"contained"), hi.entry(f"./{UP}{out}/dot", b"evil"),
                      hi.entry("..data", b"a legitimate name")])
    store, base = base_from(tmp_path, [layer], how)
    root, error = unpack_outcome(store, base)
    assert error is None
    assert (root / out / "absolute").read_text() == "contained", "an absolute name lands inside the root"
    assert (root / "..data").read_text() == "a legitimate name"
    assert find_files(store, base.layers, lambda path: path == "etc/passwd")["etc/passwd"].startswith(b"root")


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_writing_through_a_symlink_out_is_refused(tmp_path, sentinel, target):
    link = str(sentinel) if target == "absolute" else f"{UP}{str(sentinel).lstrip('/')}"
    layer = hi.layer([hi.symlink("escape", link), hi.entry("escape/owned", b"evil"),
                      hi.entry("escape", type=tarfile.DIRTYPE)])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is not None and "writes through a symlink out of the image: escape/owned" in str(error)
    assert not list((store.root / "rootfs").glob("*.tmp")), "the half-unpacked copy is removed"


def test_a_symlink_out_in_a_lower_layer_then_a_file_through_it(tmp_path, sentinel):
    lower = hi.layer([hi.entry("usr", type=tarfile.DIRTYPE), hi.symlink("usr/lib", str(sentinel))])
    upper = hi.layer([hi.entry("usr/lib/owned", b"evil")])
    store, base = base_from(tmp_path, [lower, upper])
    _, error = unpack_outcome(store, base)
    assert error is not None and "usr/lib/owned" in str(error)


def test_a_layer_cannot_take_airbuilds_marker_names(tmp_path, sentinel):
    """The unpacked copy's root holds airbuild's markers (`.airbuild-complete`, `.airbuild-layers.json`): a layer
    putting a symlink out or a directory there is replaced, never written through (a fuzzed layer found it)."""
    layer = hi.layer([hi.symlink(".airbuild-complete", str(sentinel / "written")),
                      hi.entry(".airbuild-layers.json", type=tarfile.DIRTYPE), hi.entry("etc/hostname", b"base\n")])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is None, error
    assert (root / ".airbuild-complete").read_text().isdigit() and not (root / ".airbuild-complete").is_symlink()
    assert json.loads((root / ".airbuild-layers.json").read_text())[0]["digest"] == base.layers[0].digest
    assert (root / "etc" / "hostname").read_text() == "base\n"


def test_symlinked_directories_the_sandbox_writes_into_stay_inside(tmp_path, sentinel):
    """The validation mount points (workdir, harness dir) are made where the image's links lead, inside it."""
    layer = hi.layer([hi.entry("usr/local", type=tarfile.DIRTYPE), hi.symlink("usr/local/airflow", str(sentinel)),
                      hi.symlink("harness", f"{UP}{str(sentinel).lstrip('/')}"), hi.symlink("loop", "loop")])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is None
    made = in_root(root, "/usr/local/airflow/dags")
    made.mkdir(parents=True, exist_ok=True)
    in_root(root, "/harness").mkdir(exist_ok=True)
    assert made == root / str(sentinel).lstrip("/") / "dags" and made.is_dir()
    assert (root / str(sentinel).lstrip("/")).is_dir()
    with pytest.raises(InputError, match="too many levels of symbolic links"):
        in_root(root, "/loop/x")


def test_hard_links_out_are_not_made(tmp_path, sentinel):
    layer = hi.layer([hi.symlink("out", str(sentinel)), hi.hardlink("via-symlink", "out/keep"),
                      hi.hardlink("via-dotdot", f"{UP}{str(sentinel).lstrip('/')}/keep"),
                      hi.hardlink("absolute", str(sentinel / "keep")), hi.entry("inside", b"data"),
                      hi.hardlink("inside-link", "inside")])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is None
    assert not (root / "via-symlink").exists() and not (root / "via-dotdot").exists()
    assert not (root / "absolute").exists()
    assert (root / "inside-link").read_bytes() == b"data" and (root / "inside-link").stat().st_nlink == 2
    assert (sentinel / "keep").stat().st_nlink == 1, "no link to a file outside was made"


def test_device_nodes_and_fifos_are_skipped(tmp_path, sentinel):
    layer = hi.layer([hi.device("dev/null"), hi.device("dev/sda", tarfile.BLKTYPE, 8, 0),
                      hi.entry("dev/fifo", type=tarfile.FIFOTYPE), hi.entry("etc/hostname", b"image\n")])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is None
    assert not (root / "dev" / "null").exists() and not (root / "dev" / "sda").exists()
    assert not (root / "dev" / "fifo").exists() and (root / "etc" / "hostname").is_file()


def test_a_10_gb_sparse_file_is_written_sparse(tmp_path, sentinel):
    layer = hi.layer([hi.sparse("data/huge.bin", 10 * hi.GIB), hi.entry("etc/passwd", b"root:x:0:0::/:/bin/sh\n")])
    store, base = base_from(tmp_path, [layer])
    root, error = unpack_outcome(store, base)
    assert error is None
    huge = root / "data" / "huge.bin"
    assert huge.stat().st_size == 10 * hi.GIB
    assert huge.stat().st_blocks * 512 < 64 << 20, "only the data regions were written"
    with open(huge, "rb") as handle:
        assert handle.read(4096) == b"x" * 4096
        handle.seek(10 * hi.GIB - 4096)
        assert handle.read() == b"x" * 4096


def test_a_decompression_bomb_is_refused(tmp_path, sentinel, monkeypatch):
    monkeypatch.setenv("AIRBUILD_MAX_UNPACKED_BYTES", str(1 << 20))
    bomb = hi.layer([hi.entry("zeros.bin", bytes(4 << 20))])  # 4 MiB of zeros: a few KB compressed
    store, base = base_from(tmp_path, [bomb])
    _, error = unpack_outcome(store, base)
    assert isinstance(error, InputError) and "more than 1048576 bytes" in str(error)
    assert "AIRBUILD_MAX_UNPACKED_BYTES" in str(error)


def test_a_huge_file_the_build_reads_is_refused_not_read(tmp_path, sentinel):
    layer = hi.layer([hi.sparse("etc/passwd", 10 * hi.GIB)])
    store, base = base_from(tmp_path, [layer])
    with pytest.raises(InputError, match=r"/etc/passwd is 10737418240 bytes"):
        find_files(store, base.layers, lambda path: path == "etc/passwd")


def test_a_hard_linked_file_the_build_reads_is_an_input_error(tmp_path, sentinel):
    layer = hi.layer([hi.entry("etc/real", b"x"), hi.hardlink("etc/passwd", "etc/real")])
    store, base = base_from(tmp_path, [layer])
    try:
        found = find_files(store, base.layers, lambda path: path == "etc/passwd")
    except InputError as exc:
        assert "/etc/passwd" in str(exc)
    else:
        assert found["etc/passwd"] in (b"", b"x")


HUNDRED_K = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from builder.bases.layout import from_oci_layout
from builder.layers.read import list_paths
from builder.layers.unpack import unpacked
from builder.oci.descriptors import Platform
from builder.store.store import Store
store = Store(Path(sys.argv[2]) / "store")
base = from_oci_layout(Path(sys.argv[2]), "layout", store, Platform("linux", "amd64"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
root = unpacked(store, base.layers)
files = sum(1 for _ in (root / "many").rglob("*"))
paths = len(list_paths(store, base.layers, lambda path: path.startswith("many/")))
print(json.dumps({"files": files, "paths": paths, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "rss_before_kb": before}))
"""


def test_a_100000_file_layer_unpacks_in_bounded_memory(tmp_path, sentinel):
    entries = [hi.entry(f"many/{n // 1000:03d}", type=tarfile.DIRTYPE) for n in range(0, 100_000, 1000)]
    entries += [hi.entry(f"many/{n // 1000:03d}/{n:06d}.txt", b"%d\n" % n) for n in range(100_000)]
    hi.oci_layout(tmp_path / "layout", [hi.layer(entries)])
    proc = subprocess.run([sys.executable, "-c", HUNDRED_K, str(REPO), str(tmp_path)], capture_output=True,
                          text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["files"] == 100_100 and result["paths"] == 100_100
    # The listing (100,000 short paths) is what a scan keeps; tar members are not kept as well.
    assert result["rss_kb"] - result["rss_before_kb"] < 150_000, result


def test_a_corrupt_layer_is_an_input_error(tmp_path, sentinel):
    good = hi.layer([hi.entry("a", b"x" * 10_000)])
    store, base = base_from(tmp_path, [good[:5000] + b"\xff" * 100])
    root, error = unpack_outcome(store, base)
    assert isinstance(error, InputError) and "cannot read base layer" in str(error)


@pytest.mark.parametrize("how", ["oci", "archive"])
def test_builds_on_hostile_bases_end_cleanly(tmp_path, airbuild_cache, sentinel, how):
    """Through the CLI: the build succeeds (the hostile entries contained) or stops with one clear line."""
    out = str(sentinel).lstrip("/")
    layers = [hi.layer([hi.entry("etc/passwd", b"root:x:0:0::/root:/bin/sh\nastro:x:50000:0::/a:/bin/sh\n"),
                        hi.entry(f"{UP}{out}/dotdot", b"evil"), hi.symlink("usr", str(sentinel)),
                        hi.hardlink("hl", f"{UP}{out}/keep"), hi.device("dev/null"),
                        hi.sparse("big.bin", 10 * hi.GIB)]),
              hi.layer([hi.entry("usr/owned", b"evil")])]
    project = make_project(tmp_path / "app")
    if how == "oci":
        hi.oci_layout(tmp_path / "layout", layers)
        (project / "astro.yaml").write_text("base:\n  oci: ../layout\n")
    else:
        hi.docker_archive(tmp_path / "image.tar", layers)
        (project / "astro.yaml").write_text("base:\n  archive: ../image.tar\n")
    proc = run_cli(["build", project, "--json"], check=False)
    assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr
    result = json.loads(proc.stdout)
    if proc.returncode == 0:
        assert result["validation"]["status"] == "skipped"  # no Python in this image: nothing to unpack
    else:
        assert result.get("error")
