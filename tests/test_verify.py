"""`airbuild verify` and `history --verify` against the loopback registry, with real git and skopeo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import run, run_cli, tool
from tests.test_deploy import deploy, git, make_deploy_project, repo_name
from tests.test_release import write_keys


def committed_project(tmp_path: Path, registry: str, tags: str = "[latest]") -> tuple[Path, str]:
    """The tiny-rootfs sample project with a registry target, its lock written and everything committed."""
    target = f"{registry}/verify-{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: {tags}\n")
    run_cli(["lock", project])
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first DAGs")
    return project, target


def verify(project: Path, ref: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(["verify", project, ref, *extra], check=False, env=env)


def verify_json(project: Path, ref: str, *extra: str) -> tuple[int, dict]:
    proc = verify(project, ref, "--json", *extra)
    return proc.returncode, json.loads(proc.stdout)


def test_verify_matches_the_deployed_commit_then_names_the_layer_and_files_an_edit_changed(
        tmp_path, airbuild_cache, registry):
    project, target = committed_project(tmp_path, registry)
    shipped = deploy(project)
    pinned = f"{target}@{shipped['manifest_digest']}"

    same = verify(project, pinned)
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith(f"verified {pinned} {shipped['manifest_digest']}")
    code, by_tag = verify_json(project, f"{target}:latest")
    assert code == 0 and by_tag["verified"] and by_tag["reference_digest"] == shipped["manifest_digest"]
    assert by_tag["source"] == f"commit {git(project, 'rev-parse', 'HEAD').strip()}"
    assert verify(project, str(project / ".airbuild" / "image")).returncode == 0, "an OCI layout as REF"
    assert not list((airbuild_cache / "tmp").iterdir()), "the checkout and the fresh store are gone"

    etl = project / "dags" / "etl.py"
    etl.write_text(etl.read_text() + "# a committed edit\n")
    git(project, "commit", "-qam", "edit a DAG")
    edited = verify(project, pinned)
    assert edited.returncode == 1 and "NOT VERIFIED" in edited.stdout
    assert "rule `dags`" in edited.stdout and "usr/local/airflow/dags/etl.py" in edited.stdout
    code, report = verify_json(project, pinned)
    assert code == 1 and not report["verified"]
    layer = report["first_difference"]
    assert layer["rule"] == "dags" and layer["paths_total"] == 1 and report["also_differing"] == []
    assert layer["reference"]["diff_id"] == skopeo_diff_ids(pinned)[layer["index"]]
    [path] = layer["paths"]
    assert path["path"] == "usr/local/airflow/dags/etl.py"
    assert [c["what"] for c in path["changes"]] == ["content"]

    git(project, "checkout", "-q", "HEAD~1", "--", "dags/etl.py")  # the content as shipped again
    (project / "dags" / "reports" / "daily.py").chmod(0o755)
    git(project, "commit", "-qam", "make a DAG executable")
    code, report = verify_json(project, pinned)
    assert code == 1
    [path] = report["first_difference"]["paths"]
    assert path == {"path": "usr/local/airflow/dags/reports/daily.py",
                    "changes": [{"what": "mode", "rebuilt": "0755", "reference": "0644"}]}


def test_verify_key_checks_the_signed_provenance_deploy_attached(tmp_path, airbuild_cache, registry):
    project, target = committed_project(tmp_path, registry)
    (tmp_path / "keys").mkdir()
    (tmp_path / "other").mkdir()
    private, public = write_keys(tmp_path / "keys")
    _, stranger = write_keys(tmp_path / "other")
    shipped = deploy(project, "--sign-key", str(private))
    pinned = f"{target}@{shipped['manifest_digest']}"

    signed = verify(project, pinned, "--key", str(public))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert f"provenance signed by {public} checks out" in signed.stdout
    code, report = verify_json(project, pinned, "--key", str(stranger))
    assert code == 1 and not report["verified"] and not report["provenance"]["checked"]
    assert report["provenance"]["referrer_count"] == 1 and report["rebuilt_digest"] == shipped["manifest_digest"]
    assert verify(project, str(project / ".airbuild" / "image"), "--key", str(public)).returncode == 2, \
        "a layout carries no referrers here: a clear error"


def skopeo_diff_ids(ref: str) -> list[str]:
    config = json.loads(run([tool("skopeo"), "inspect", "--config", "--tls-verify=false", f"docker://{ref}"]).stdout)
    return config["rootfs"]["diff_ids"]


def test_verify_rebuilds_the_tree_a_clone_checks_out_submodules_and_export_attributes_included(
        tmp_path, airbuild_cache, registry):
    library = tmp_path / "shared-lib"
    library.mkdir()
    (library / "helpers.py").write_text("VALUE = 1\n")
    git(library, "init", "-q")
    git(library, "add", "-A")
    git(library, "commit", "-qm", "lib")
    target = f"{registry}/verify-{repo_name()}"
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    registry: {target}\n    tags: [latest]\n")
    # What `git archive` would drop or rewrite, which a clone (and so a CI build) has as committed.
    (project / ".gitattributes").write_text("dags/local_only.py export-ignore\ninclude/version.txt export-subst\n")
    (project / "dags" / "local_only.py").write_text("# shipped, though git archive leaves it out\n")
    (project / "include" / "version.txt").write_text("$Format:%H$\n")
    run_cli(["lock", project])
    git(project, "init", "-q")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "include/shared")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "with a submodule")
    pinned = f"{target}@{deploy(project)['manifest_digest']}"

    code, report = verify_json(project, pinned)
    assert code == 0 and report["verified"], report.get("first_difference")

    (project / "include" / "shared" / "helpers.py").write_text("VALUE = 2\n")
    git(project / "include" / "shared", "commit", "-qam", "lib moves on")
    git(project, "commit", "-qam", "pin the new lib")
    code, report = verify_json(project, pinned)
    assert code == 1 and report["first_difference"]["paths"][0]["path"].endswith("include/shared/helpers.py")

    git(project, "submodule", "deinit", "-q", "-f", "include/shared")
    missing = verify(project, pinned)
    assert missing.returncode == 2 and "git submodule update --init include/shared" in missing.stderr


def test_a_dirty_tree_is_refused_unless_forced_and_then_the_working_tree_is_verified(
        tmp_path, airbuild_cache, registry):
    project, target = committed_project(tmp_path, registry)
    pinned = f"{target}@{deploy(project)['manifest_digest']}"
    (project / "dags" / "new.py").write_text("x = 1\n")

    refused = verify(project, pinned)
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr
    assert "dags/new.py" in refused.stderr and "--force" in refused.stderr

    code, report = verify_json(project, pinned, "--force")
    assert code == 1 and report["source"] == "the working tree" and report["warnings"]
    assert report["first_difference"]["rule"] == "dags"
    assert report["first_difference"]["paths"] == [
        {"path": "usr/local/airflow/dags/new.py", "changes": [{"what": "presence", "rebuilt": "file",
                                                               "reference": "absent"}]}]


def test_an_archive_verifies_and_no_lock_or_an_unreachable_reference_is_a_clear_error(tmp_path, airbuild_cache, registry):
    project, target = committed_project(tmp_path, registry)
    missing = verify(project, f"{target}:never-pushed")
    assert missing.returncode == 2 and "not found in the registry" in missing.stderr
    assert "Traceback" not in missing.stderr
    down = verify(project, "127.0.0.1:1/nobody/here:x", env={"AIRBUILD_REGISTRY_RETRIES": "1"})
    assert down.returncode == 1 and "127.0.0.1:1" in down.stderr and "Traceback" not in down.stderr
    no_layout = verify(project, str(tmp_path / "no-such-layout"))
    assert no_layout.returncode == 2 and "no such OCI layout" in no_layout.stderr

    archive = tmp_path / "image.tar"
    run_cli(["build", project, "--no-validate", "--archive", archive])
    from_archive = verify(project, str(archive))
    assert from_archive.returncode == 0 and from_archive.stdout.startswith(f"verified {archive} sha256:")

    git(project, "rm", "-q", "astro.lock")
    git(project, "commit", "-qm", "drop the lock")
    unlocked = verify(project, f"{target}:latest")
    assert unlocked.returncode == 2 and "has no astro.lock" in unlocked.stderr and "airbuild lock" in unlocked.stderr
    (project / ".gitignore").write_text("astro.lock\n")
    run_cli(["lock", project])
    git(project, "add", ".gitignore")
    git(project, "commit", "-qm", "the lock ignored")
    ignored = verify(project, f"{target}:latest")
    assert ignored.returncode == 2 and "not committed" in ignored.stderr and "git add -f astro.lock" in ignored.stderr


def test_history_verify_catches_a_tag_moved_behind_airbuilds_back_and_a_deleted_one(
        tmp_path, airbuild_cache, registry):
    project, target = committed_project(tmp_path, registry, tags="[latest, stable]")
    shipped = deploy(project)["manifest_digest"]
    clean = run_cli(["history", project, "--verify"], check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("ok ") == 3, "deploy-<digest>, latest and stable"

    other = tmp_path / "other"
    (project / "dags" / "etl.py").write_text("# another image\n")
    run_cli(["build", project, "--no-validate", "--oci", other])
    pushed_by_hand = json.loads((other / "index.json").read_text())["manifests"][0]["digest"]
    run([tool("skopeo"), "copy", "--quiet", "--dest-tls-verify=false", f"oci:{other}", f"docker://{target}:latest"])

    moved = run_cli(["history", project, "--verify"], check=False)
    assert moved.returncode == 1
    [line] = [line for line in moved.stdout.splitlines() if line.startswith("MOVED")]
    assert f"{target}:latest" in line and shipped in line and pushed_by_hand in line
    report = json.loads(run_cli(["history", project, "--verify", "--json"], check=False).stdout)
    by_tag = {t["tag"]: t for t in report["tags"]}
    assert by_tag["latest"]["status"] == "moved" and by_tag["latest"]["current"] == pushed_by_hand
    assert by_tag["latest"]["recorded"] == shipped and by_tag["stable"]["status"] == "ok"
    assert report["moved"] == 1 and report["checked"] == 3

    # Deleting the shipped manifest takes every tag still on it (deploy-<digest>, stable) with it.
    run([tool("skopeo"), "delete", "--tls-verify=false", f"docker://{target}@{shipped}"])
    report = json.loads(run_cli(["history", project, "--verify", "--json"], check=False).stdout)
    assert {t["tag"]: t["status"] for t in report["tags"]} == {
        f"deploy-{shipped[7:19]}": "deleted", "latest": "moved", "stable": "deleted"}
    assert "DELETED" in run_cli(["history", project, "--verify"], check=False).stdout


def test_layer_diff_names_each_kind_of_difference_and_shows_at_most_50_paths(tmp_path):
    """Two layers written by airbuild's own tar writer, compared through the store as verify does."""
    from builder.layers.compress import Codec
    from builder.layers.diff import diff_layers
    from builder.layers.tar import LayerItem, store_layer
    from builder.store.store import Store

    def item(path: str, data: bytes = b"same\n", **fields) -> LayerItem:
        return LayerItem(path, "file", fields.pop("mode", 0o644), size=len(data), data=data, **fields)

    common = [LayerItem("app", "dir", 0o755), LayerItem("app/z-many", "dir", 0o755)]
    ours = common + [item("app/owned", uid=50000), item("app/run.sh", mode=0o755), item("app/stamp"),
                     LayerItem("app/link", "symlink", 0o777, link="owned"), item("app/only-ours"),
                     *(item(f"app/z-many/{i:02}", b"new\n") for i in range(55))]
    theirs = common + [item("app/owned"), item("app/run.sh"), item("app/stamp", mtime=7),
                       LayerItem("app/link", "symlink", 0o777, link="run.sh"),
                       LayerItem("app/only-ours", "dir", 0o755), item("app/only-theirs"),
                       *(item(f"app/z-many/{i:02}", b"old\n") for i in range(55))]
    store = Store(tmp_path / "store")
    codec = Codec("gzip", 1)
    diff = diff_layers(store, store_layer(store, codec, ours, 0), store_layer(store, codec, theirs, 0))
    assert diff.total == 6 + 55 and len(diff.paths) == 50
    changes = {p.path: [(c.what, c.rebuilt, c.reference) for c in p.changes] for p in diff.paths}
    assert list(changes)[:7] == ["app/link", "app/only-ours", "app/only-theirs", "app/owned", "app/run.sh",
                                 "app/stamp", "app/z-many/00"]
    assert changes["app/link"] == [("link", "owned", "run.sh")]
    assert changes["app/owned"] == [("owner", "50000:0", "0:0")]
    assert changes["app/run.sh"] == [("mode", "0755", "0644")]
    assert changes["app/stamp"] == [("mtime", "0", "7")]
    assert changes["app/only-ours"] == [("type", "file", "dir")]
    assert changes["app/only-theirs"] == [("presence", "absent", "file")]
    [(what, rebuilt, reference)] = changes["app/z-many/00"]
    assert what == "content" and rebuilt.startswith("4 bytes, sha256:") and rebuilt != reference
