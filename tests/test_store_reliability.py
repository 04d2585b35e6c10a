"""The store a team can trust: `cache du | gc | verify`, locks that mean something, outputs that survive crashes.

Real builds (a small rootfs base), real processes holding real flocks (one in its own PID
namespace), a real tmpfs filled up, real SIGKILLs (the quick variant of benchmarks/store_campaign.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run, run_cli, tool
from tests.projects import make_project, set_age
from tests.test_bases import tiny_rootfs

sys.path.insert(0, str(REPO / "benchmarks"))
import store_campaign  # noqa: E402  (benchmarks/ is not a package)


def build(project: Path, *extra: str, check: bool = True, env: dict | None = None):
    """A build that reads the store (never answered from the no-op stamp: that would not read it)."""
    (project / ".airbuild" / "stamp.json").unlink(missing_ok=True)
    proc = run_cli(["build", project, "--no-validate", "--json", *extra], check=check, env=env)
    return json.loads(proc.stdout) if check else proc


def cache(*args: str, check: bool = True, env: dict | None = None):
    return run_cli(["cache", *args], check=check, env=env)


def new_project(root: Path, name: str, payload: bytes = b"") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "rootfs.tar.gz").exists():
        tiny_rootfs(root / "rootfs.tar.gz")
    project = make_project(root / name)
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    if payload:
        (project / "include" / "payload.bin").write_bytes(payload)
    set_age(project, 3600)
    return project


def age_store(store: Path, days: float) -> None:
    then = time.time() - days * 86400
    for dirpath, dirnames, filenames in os.walk(store):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (then, then), follow_symlinks=False)


def holder(code: str, *prefix: str) -> subprocess.Popen:
    """A process running `code` (which prints `ready` once it holds what it holds), until its stdin closes."""
    proc = subprocess.Popen([*prefix, sys.executable, "-c", code + "\nprint('ready', flush=True)\nsys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=60)


def test_du_tells_kinds_apart_and_verify_quarantines_corrupt_entries(tmp_path, airbuild_cache):
    project = new_project(tmp_path, "p", os.urandom(1 << 16))
    first = build(project)
    du = json.loads(cache("du", "--json").stdout)
    kinds = du["kinds"]
    assert kinds["layer blobs"]["count"] >= 2 and kinds["layer records"]["count"] >= 2
    assert kinds["image metadata"]["count"] >= 2, "configs and a manifest"
    assert du["total_bytes"] == sum(k["bytes"] for k in kinds.values()) > 1 << 16
    clean = json.loads(cache("verify", "--json").stdout)
    assert clean["corrupt"] == [] and clean["bytes_hashed"] > 1 << 16

    layer = first["layers"][-1]["digest"].removeprefix("sha256:")
    blob = airbuild_cache / "blobs" / "sha256" / layer
    blob.chmod(0o644)
    with open(blob, "r+b") as handle:  # one flipped byte: same size, different hash
        byte = handle.read(1)
        handle.seek(0)
        handle.write(bytes([byte[0] ^ 1]))
    record = sorted((airbuild_cache / "layers").glob("*.json"))[0]
    record.write_text('{"digest": ')
    bad = cache("verify", "--json", check=False)
    assert bad.returncode == 1
    corrupt = {c["path"]: c for c in json.loads(bad.stdout)["corrupt"]}
    assert set(corrupt) == {f"blobs/sha256/{layer}", f"layers/{record.name}"}
    assert all((airbuild_cache / c["quarantined"]).exists() for c in corrupt.values())
    assert not blob.exists() and not record.exists()
    human = cache("verify", check=False)
    assert human.returncode == 0 and "all entries are intact" in human.stdout, "quarantined: not seen again"

    again = build(project)
    assert again["manifest_digest"] == first["manifest_digest"], "the corrupt layer was built again, same bytes"
    assert json.loads(cache("du", "--json").stdout)["kinds"]["quarantined"]["count"] == 2


def unpack_image(project: Path, store_dir: Path) -> Path:
    """The project's built image unpacked into the store, as validation unpacks its environment."""
    from builder.layers.unpack import unpacked
    from builder.store.store import LayerRecord, Store

    layout = project / ".airbuild" / "image"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_text())
    records = [LayerRecord(diff_id, layer["digest"], layer["size"], layer["mediaType"])
               for diff_id, layer in zip(config["rootfs"]["diff_ids"], manifest["layers"])]
    store = Store(store_dir)
    try:
        return unpacked(store, records)
    finally:
        store.close()


def test_verify_compares_unpacked_environments_with_their_layers(tmp_path, airbuild_cache):
    project = new_project(tmp_path, "p", os.urandom(1 << 16))
    build(project)
    environment = unpack_image(project, airbuild_cache)
    payload = next(environment.rglob("payload.bin"))
    (payload.parent / "__pycache__").mkdir()
    (payload.parent / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"bytecode airbuild compiled")
    (environment / "mnt" / "mountpoint").mkdir(parents=True)
    clean = json.loads(cache("verify", "--json").stdout)
    assert clean["checked"]["unpacked environments"] == 1 and clean["corrupt"] == [], "bytecode and directories: ours"

    with open(payload, "r+b") as handle:  # same size, one byte changed
        byte = handle.read(1)
        handle.seek(0)
        handle.write(bytes([byte[0] ^ 1]))
    bad = cache("verify", "--json", check=False)
    assert bad.returncode == 1
    [corrupt] = json.loads(bad.stdout)["corrupt"]
    assert corrupt["kind"] == "unpacked environments" and corrupt["path"] == f"rootfs/{environment.name}"
    assert "payload.bin" in corrupt["reason"] and "content differs" in corrupt["reason"]
    assert not environment.exists(), "removed: it is unpacked again when needed"

    environment = unpack_image(project, airbuild_cache)
    (environment / "etc" / "planted").write_text("not from any layer")
    human = cache("verify", check=False)
    assert human.returncode == 1 and "/etc/planted: not in its layers" in human.stdout
    assert "unpacked again when next needed" in human.stdout
    environment = unpack_image(project, airbuild_cache)
    next(environment.rglob("payload.bin")).unlink()
    assert "payload.bin: missing" in cache("verify", check=False).stdout


def test_gc_evicts_least_recently_used_first_and_dry_run_removes_nothing(tmp_path, airbuild_cache):
    old = new_project(tmp_path, "old", os.urandom(300_000))
    build(old)
    age_store(airbuild_cache, 3)  # the old project's entries were last used three days ago
    new = new_project(tmp_path, "new", os.urandom(200_000))
    built = build(new)
    total = json.loads(cache("du", "--json").stdout)["total_bytes"]

    dry = json.loads(cache("gc", "--max-size", "400KB", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["before_bytes"] == total and dry["after_bytes"] <= 400_000
    assert json.loads(cache("du", "--json").stdout)["total_bytes"] == total, "a dry run removes nothing"

    done = json.loads(cache("gc", "--max-size", "400KB", "--json").stdout)
    assert done["max_size"] == 400_000 and done["evicted"]["layer blobs"]["count"] >= 1
    after = json.loads(cache("du", "--json").stdout)["total_bytes"]
    assert after == done["after_bytes"] <= 400_000
    rebuilt = build(new)
    assert all(layer["cached"] for layer in rebuilt["layers"][1:]), "the recently used project kept its layers"
    assert rebuilt["manifest_digest"] == built["manifest_digest"]
    assert json.loads(cache("verify", "--json").stdout)["corrupt"] == []


def test_gc_sizes_and_keep_days(tmp_path, airbuild_cache):
    sizes = {"500MB": 500 * 10**6, "20GB": 20 * 10**9, "1.5GiB": int(1.5 * 2**30), "1024": 1024}
    for text, expected in sizes.items():
        assert json.loads(cache("gc", "--max-size", text, "--dry-run", "--json").stdout)["max_size"] == expected
    wrong = cache("gc", "--max-size", "12 parsecs", check=False)
    assert wrong.returncode == 2 and "--max-size" in wrong.stderr and "Traceback" not in wrong.stderr
    neither = cache("gc", check=False)
    assert neither.returncode == 2 and "--max-size" in neither.stderr

    project = new_project(tmp_path, "p")
    build(project)
    kept = json.loads(cache("gc", "--keep-days", "1", "--json").stdout)
    assert kept["evicted"] == {}, "everything was used today"
    age_store(airbuild_cache, 2)
    gone = json.loads(cache("gc", "--keep-days", "1", "--json").stdout)
    assert gone["after_bytes"] == 0 and gone["evicted"]["layer blobs"]["count"] >= 1


def test_gc_waits_for_a_running_build_and_verify_does_not(tmp_path, airbuild_cache):
    project = new_project(tmp_path, "p")
    build(project)
    before = json.loads(cache("du", "--json").stdout)["total_bytes"]
    build_like = holder(f"import sys\nfrom pathlib import Path\nfrom builder.store.store import Store\n"
                        f"store = Store(Path({str(airbuild_cache)!r}))")  # what every build holds: the store, shared
    try:
        assert cache("verify").returncode == 0, "verify runs beside builds"
        gc = subprocess.Popen([sys.executable, "-m", "builder", "cache", "gc", "--max-size", "0", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert "waiting for the builds using the store" in gc.stderr.readline()
        assert gc.poll() is None and json.loads(cache("du", "--json").stdout)["total_bytes"] == before
    finally:
        release(build_like)
    out, _ = gc.communicate(timeout=120)
    assert gc.returncode == 0 and json.loads(out)["after_bytes"] == 0


def test_configured_limit_runs_gc_after_a_build_keeping_what_it_used(tmp_path, airbuild_cache):
    config = tmp_path / "config"
    (config / "airbuild").mkdir(parents=True)
    (config / "airbuild" / "config.toml").write_text('[cache]\nmax_size = "350KB"\n')
    env = {"XDG_CONFIG_HOME": str(config)}
    first = new_project(tmp_path, "first", os.urandom(300_000))
    build(first, env=env)
    second = new_project(tmp_path, "second", os.urandom(300_000))
    built = build(second, env=env)
    assert json.loads(cache("du", "--json").stdout)["total_bytes"] <= 350_000
    assert built["gc"]["max_size"] == 350_000 and built["gc"]["after_bytes"] <= 350_000 < built["gc"]["before_bytes"]
    assert built["gc"]["evicted"]["layer blobs"]["count"] >= 1, "the build says what its gc evicted"
    (second / "include" / "payload.bin").write_bytes(os.urandom(300_000))
    set_age(second, 3600)
    human = run_cli(["build", second, "--no-validate"], env=env).stdout
    assert "store     over its limit:" in human and "evicted" in human
    again = build(second, env=env)
    assert all(layer["cached"] for layer in again["layers"][1:]), "the last build's layers were kept"
    assert again["gc"] is None, "under its limit: no gc ran"
    over = build(second, env={**env, "AIRBUILD_CACHE_MAX_SIZE": "lots"}, check=False)
    assert over.returncode == 2 and "AIRBUILD_CACHE_MAX_SIZE" in over.stderr
    (config / "airbuild" / "config.toml").write_text("[cache\n")
    broken = build(second, env=env, check=False)
    assert broken.returncode == 2 and "config.toml" in broken.stderr and "Traceback" not in broken.stderr


def test_sweep_removes_only_temps_whose_writer_is_gone(tmp_path, airbuild_cache):
    """Live writers hold their locks (one from another PID namespace); writers killed mid-write do not."""
    store = airbuild_cache
    write_blob = (f"import sys\nfrom pathlib import Path\nfrom builder.store.store import Store\n"
                  f"store = Store(Path({str(store)!r}))\nheld = store.blob_writer()\nw = held.__enter__()\nw.write(b'x' * 1000)\n"
                  f"work = store.work_dir('job')\n(work.path / 'f').write_text('x')\n"
                  f"from builder.common.atomic import atomic_writer\n"
                  f"held2 = atomic_writer(Path({str(store)!r}) / 'layers' / 'k.json')\nheld2.__enter__().write(b'{{')\n")
    unshare = tool("unshare")
    live = holder(write_blob, unshare, "--pid", "--fork")  # its PIDs mean nothing here
    dead = holder(write_blob)
    dead.kill()
    dead.wait()
    try:
        tmp = sorted(p.name for p in (store / "tmp").iterdir())
        assert len([n for n in tmp if n.startswith("blob.")]) == 2 and len([n for n in tmp if n.startswith("job.")]) == 4
        assert len(list((store / "layers").glob(".k.json.*.tmp"))) == 2
        report = json.loads(cache("verify", "--json").stdout)
        assert report["corrupt"] == []
        left = sorted(p.name for p in (store / "tmp").iterdir())
        assert len([n for n in left if n.startswith("blob.")]) == 1, "the live writer's blob stays"
        assert len([n for n in left if n.startswith("job.")]) == 2, "its work directory and lock file stay"
        assert len(list((store / "layers").glob(".k.json.*.tmp"))) == 1
    finally:
        release(live)


def test_second_build_of_a_project_waits_and_says_so(tmp_path, airbuild_cache):
    project = new_project(tmp_path, "p")
    build(project)
    (project / "dags" / "new.py").write_text("# new\n")
    set_age(project, 3600)
    first = holder(f"import sys\nfrom pathlib import Path\nfrom builder.engine.project_lock import project_locked\n"
                   f"held = project_locked(Path({str(project)!r}))\nheld.__enter__()")
    try:
        second = subprocess.Popen([sys.executable, "-m", "builder", "build", str(project), "--no-validate", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        assert "another build of" in second.stderr.readline()
        assert second.poll() is None
    finally:
        release(first)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0 and json.loads(out)["manifest_digest"]


def test_oci_dir_keeps_the_other_images_of_a_layout(tmp_path, airbuild_cache):
    layout = tmp_path / "layout"
    one = build(new_project(tmp_path, "one"), "--oci", layout)
    two_project = new_project(tmp_path, "two", b"other bytes")
    two = build(two_project, "--oci", layout)
    index = json.loads((layout / "index.json").read_text())
    assert {m["digest"] for m in index["manifests"]} == {one["manifest_digest"], two["manifest_digest"]}
    skopeo = tool("skopeo")
    for image in (one, two):
        inspected = json.loads(run([skopeo, "inspect", f"oci:{layout}:{image['tag']}"]).stdout)
        assert inspected["Digest"] == image["manifest_digest"]
    again = build(two_project, "--oci", layout)
    assert len(json.loads((layout / "index.json").read_text())["manifests"]) == 2, "the same image is not added twice"
    assert again["manifest_digest"] == two["manifest_digest"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "index.json").write_text("not json")
    bad = build(two_project, "--oci", tmp_path / "junk", check=False)
    assert bad.returncode == 2 and "index.json" in bad.stderr


def test_two_projects_writing_one_oci_dir_take_turns(tmp_path, airbuild_cache):
    layout = tmp_path / "layout"
    one = build(new_project(tmp_path, "one"), "--oci", layout)
    two_project = new_project(tmp_path, "two", b"other bytes")
    (two_project / ".airbuild" / "stamp.json").unlink(missing_ok=True)
    fd = os.open(layout, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another airbuild writing this layout holds it
        second = subprocess.Popen([sys.executable, "-m", "builder", "build", str(two_project), "--no-validate",
                                   "--json", "--oci", str(layout)], env={**os.environ, "PYTHONPATH": str(REPO)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waited = ""
        deadline = time.monotonic() + 120
        while "waiting for it" not in waited and second.poll() is None and time.monotonic() < deadline:
            waited += os.read(second.stderr.fileno(), 4096).decode()
        assert "another airbuild is writing the OCI layout" in waited, waited
        index = json.loads((layout / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [one["manifest_digest"]], "nothing written while held"
    finally:
        os.close(fd)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    two = json.loads(out)
    index = json.loads((layout / "index.json").read_text())
    assert {m["digest"] for m in index["manifests"]} == {one["manifest_digest"], two["manifest_digest"]}


def test_an_interrupted_layout_write_never_names_missing_blobs(tmp_path, airbuild_cache):
    project = new_project(tmp_path, "p", os.urandom(1 << 20))
    first = build(project)
    layout = project / ".airbuild" / "image"

    def new_payload():
        (project / "include" / "payload.bin").write_bytes(os.urandom(8 << 20))
        set_age(project, 3600)
        (project / ".airbuild" / "stamp.json").unlink(missing_ok=True)

    # Kill points as fractions of how long a whole build of new bytes takes on this machine, so some kills
    # land inside the build however fast it runs.
    new_payload()
    whole = store_campaign.killed_build(project, airbuild_cache, 600)
    assert whole is not None and whole[1] == 0
    stopped = 0
    for fraction in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        new_payload()
        if store_campaign.killed_build(project, airbuild_cache, whole[0] * fraction) is None:
            stopped += 1
        index = json.loads((layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest.removeprefix("sha256:")).read_text())
        for blob in [manifest["config"], *manifest["layers"]]:
            assert (layout / "blobs" / "sha256" / blob["digest"].removeprefix("sha256:")).exists()
    assert stopped >= 1
    assert build(project)["manifest_digest"] != first["manifest_digest"]


def test_a_full_disk_is_a_clear_error_and_the_store_stays_clean(tmp_path):
    store = tmp_path / "small"
    store.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", store])
    try:
        project = new_project(tmp_path, "p", os.urandom(30 << 20))
        env = {"AIRBUILD_CACHE_DIR": str(store)}
        full = build(project, env=env, check=False)
        assert full.returncode == 1 and "no space left" in full.stderr and "cache gc" in full.stderr
        assert "Traceback" not in full.stderr + full.stdout and "internal error" not in full.stderr
        report = json.loads(cache("verify", "--json", env=env).stdout)
        assert report["corrupt"] == [] and report["checked"], "what was written before is whole"
        assert list((store / "tmp").iterdir()) == [], "nothing half-written was kept"
        (project / "include" / "payload.bin").unlink()
        set_age(project, 3600)
        assert build(project, env=env)["manifest_digest"]
    finally:
        run(["umount", store])


def test_sigkill_campaign_quick(tmp_path):
    """Five builds (cold and incremental) SIGKILLed at random moments within their measured duration."""
    base = tmp_path / "base.tar.gz"
    store_campaign.tiny_base(base)
    result = store_campaign.campaign(5, base, tmp_path / "work", seed=3)
    failed = [t for t in result["trials"] if not (t["verify_exit"] == 0 and t["digest_ok"]
                                                  and not t["tmp_left_after_rebuild"])]
    assert failed == [] and result["all_attempts_clean"]
    assert result["killed_inside_build"] == result["survived"] == 5, result["trials"]
    gc = result["gc"]
    assert gc["after_bytes"] <= gc["max_size"] < gc["before_bytes"] and gc["verify_exit"] == 0 and gc["digest_ok"]
    concurrent = result["concurrent"]  # builds beside `cache gc --max-size 0` and `cache verify` in a loop
    assert concurrent["builds_ok"] == concurrent["builds"] and concurrent["corrupt_seen"] == 0
