"""`airbuild deploy` to Astro: the Deploy API flow against a local server written from Astro's API
reference (tests/astro_api_server.py), with the real loopback registry behind its imageRepository."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.astro_api_server import REFUSAL, AstroAPIServer
from tests.helpers import run, run_cli, tool
from tests.projects import set_age
from tests.test_deploy import make_deploy_project, skopeo_inspect
from tests.test_deploy_gates import USES_TOOLZ, with_airflow
from tests.test_validate import AIRFLOW_3, TEST_STORE

TOKEN = "astro-api-token-" + "7f3a9c" * 6
ORG = "org-test"
EPOCH = "1700000000"
DAG_FILES = ["dags/.airflowignore", "dags/etl.py", "dags/lookup.py", "dags/reports/daily.py",
             "dags/reports/weekly.py"]


@pytest.fixture
def astro(registry):
    server = AstroAPIServer(registry, TOKEN, ORG)
    yield server
    server.stop()


def env_for(server: AstroAPIServer, **extra: str) -> dict[str, str]:
    return {"ASTRO_API_URL": server.url, "ASTRO_API_TOKEN": TOKEN, "SOURCE_DATE_EPOCH": EPOCH, **extra}


def astro_project(tmp_path: Path, deployment: str, organization: str | None = ORG) -> Path:
    org = f", organization: {organization}" if organization else ""
    project = make_deploy_project(tmp_path, f"targets:\n  prod:\n    astro: {{deployment: {deployment}{org}}}\n")
    (project / "dags" / ".airflowignore").write_text("helpers/\n")
    (project / "dags" / "private").mkdir()
    (project / "dags" / "private" / "draft.py").write_text("x = 1\n")  # .dockerignore'd: in no layer, no bundle
    with open(project / ".dockerignore", "a") as ignore:
        ignore.write("dags/private/\n")
    set_age(project, 3600)
    return project


def new_deployment(astro: AstroAPIServer, tmp_path: Path, dep: str, *, dag_deploys: bool = True) -> tuple[str, Path]:
    """A Deployment on the API server (its registry repository) and a project whose `prod` target is it."""
    return astro.add_deployment(dep, dag_deploys=dag_deploys).repository, astro_project(tmp_path, dep)


def deploy(project: Path, env: dict, *extra: str, check: bool = True):
    proc = run_cli(["deploy", project, "--json", *extra], env=env, check=check)
    return json.loads(proc.stdout) if check else proc


def bundle_entries(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getmembers()


def image_history(ref: str) -> list[str]:
    config = json.loads(run([tool("skopeo"), "inspect", "--config", "--tls-verify=false", f"docker://{ref}"]).stdout)
    return [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]


def no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def test_full_deploy_with_dag_deploys_ships_the_image_without_dags_and_a_bundle(tmp_path, airbuild_cache, astro):
    dep = "cldagdeploy01"
    repository, project = new_deployment(astro, tmp_path, dep)
    result = deploy(project, env_for(astro))

    info = result["astro"]
    assert info["deploy_type"] == "IMAGE_AND_DAG" and info["status"] == "DEPLOYED"
    created = astro.deploys[info["deploy_id"]]
    assert info["image_tag"] == created["imageTag"] and created["status"] == "DEPLOYED"
    assert info["dag_tarball_version"] in astro.bundles
    assert [c for c in astro.calls() if c[1] != "get-deploy"] == [
        ("GET", "get-deployment"), ("POST", "create"), ("PUT", "upload"), ("POST", "finalize")]
    assert astro.log[-1].body == {"dagTarballVersion": info["dag_tarball_version"]}

    # The image: at imageRepository:imageTag and deploy-<digest>, the build's image minus its DAG layer.
    target = f"{astro.registry}/{repository}"
    assert skopeo_inspect(f"{target}:{info['image_tag']}")["Digest"] == info["image_digest"] == result["manifest_digest"]
    assert skopeo_inspect(f"{target}:{result['tag']}")["Digest"] == info["image_digest"]
    assert result["tags"] == [result["tag"], info["image_tag"]]
    built = json.loads((project / ".airbuild" / "build.json").read_text())
    history = image_history(f"{target}:{info['image_tag']}")
    assert not any(h.startswith("airbuild dags:") for h in history)
    assert any(h.startswith("airbuild project-files:") for h in history)
    assert len(history) == len(built["layers"]) - 1, "every layer of the build but the DAG layer"

    # The bundle: dags/ as the Astro CLI lays it out, reproducible, the .dockerignore'd file left out.
    data = astro.bundles[info["dag_tarball_version"]]
    assert hashlib.sha256(data).hexdigest() == info["bundle_sha256"] and len(data) == info["bundle_bytes"]
    entries = bundle_entries(data)
    assert [e.name for e in entries] == DAG_FILES and all(e.isfile() for e in entries)
    assert {(e.mtime, e.uid, e.gid, e.uname, e.gname, e.mode) for e in entries} == {(int(EPOCH), 0, 0, "", "", 0o644)}
    assert data[4:8] == b"\0\0\0\0", "gzip header mtime 0"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        assert archive.extractfile("dags/etl.py").read() == (project / "dags" / "etl.py").read_bytes()

    records = json.loads(run_cli(["history", project, "--json"]).stdout)
    assert records[-1]["astro"] == {k: info[k] for k in records[-1]["astro"]}
    assert records[-1]["astro"]["deploy_id"] == info["deploy_id"] and records[-1]["digest"] == info["image_digest"]
    table = run_cli(["history", project]).stdout
    assert info["deploy_id"] in table and info["image_tag"] in table and info["dag_tarball_version"] in table
    no_secret((project / ".airbuild" / "deploys.jsonl").read_text(), json.dumps(result))

    # A DAG edit changes the bundle, not the image: a second full deploy pushes no blob.
    (project / "dags" / "etl.py").write_text((project / "dags" / "etl.py").read_text() + "# one edit\n")
    again = deploy(project, env_for(astro))
    assert again["manifest_digest"] == result["manifest_digest"] and again["blobs_uploaded"] == 0
    assert again["astro"]["image_tag"] != info["image_tag"], "Astro names a new tag for each deploy"
    assert again["astro"]["bundle_sha256"] != info["bundle_sha256"]


def test_full_deploy_without_dag_deploys_is_image_only_with_the_dags(tmp_path, airbuild_cache, astro):
    dep = "climageonly01"
    repository = astro.add_deployment(dep, dag_deploys=False, scheme="http://").repository  # scheme tolerated
    project = make_deploy_project(tmp_path, "")  # no target: --astro, the organization from the environment
    result = deploy(project, env_for(astro, ASTRO_ORGANIZATION_ID=ORG), "--astro", dep, "--description", "v1")

    info = result["astro"]
    assert info["deploy_type"] == "IMAGE_ONLY" and result["target"] == f"astro:{dep}"
    assert info["dag_tarball_version"] is None and info["bundle_sha256"] is None and not astro.bundles
    assert astro.log[-1].body == {} and astro.deploys[info["deploy_id"]]["description"] == "v1"
    built = json.loads((project / ".airbuild" / "build.json").read_text())
    assert info["image_digest"] == built["manifest_digest"], "the image as built, DAG layer included"
    assert any(h.startswith("airbuild dags:") for h in image_history(f"{astro.registry}/{repository}:"
                                                                      f"{info['image_tag']}"))
    assert result["reference"] == f"{astro.registry}/{repository}@{info['image_digest']}"

    human = run_cli(["deploy", project, "--astro", dep], env=env_for(astro, ASTRO_ORGANIZATION_ID=ORG)).stdout
    assert "IMAGE_ONLY" in human and info["image_digest"] in human


def test_dags_only_deploys_send_the_same_bytes_for_the_same_dags(tmp_path, airbuild_cache, astro):
    dep = "cldagonly0001"
    repository, project = new_deployment(astro, tmp_path, dep)
    full = deploy(project, env_for(astro))
    tags = run([tool("skopeo"), "list-tags", "--tls-verify=false", f"docker://{astro.registry}/{repository}"]).stdout

    (project / "include" / "data.csv").write_text("a,b\n9,9\n")  # not a DAG: a DAG-only deploy leaves it
    first = deploy(project, env_for(astro), "--dags")
    os.utime(project / "dags" / "etl.py", (1e9, 1e9))  # another checkout's mtimes and owner: the same bundle
    os.chown(project / "dags" / "etl.py", 1234, 1234)
    second = deploy(project, env_for(astro), "--dags")
    for result in (first, second):
        assert result["astro"]["deploy_type"] == "DAG_ONLY" and result["dags_only"]
        assert result["manifest_digest"] is None and result["reference"] is None and result["tags"] == []
        assert result["blobs_uploaded"] == 0 and result["bytes_uploaded"] == result["astro"]["bundle_bytes"]
    one, two = (astro.bundles[r["astro"]["dag_tarball_version"]] for r in (first, second))
    assert one == two == astro.bundles[full["astro"]["dag_tarball_version"]], "same DAGs, same bytes"
    assert first["astro"]["dag_tarball_version"] != second["astro"]["dag_tarball_version"]
    assert run([tool("skopeo"), "list-tags", "--tls-verify=false",
                f"docker://{astro.registry}/{repository}"]).stdout == tags, "no image pushed"
    kinds = [kind for _, kind in astro.calls()]
    assert kinds[-4:] == ["get-deployment", "create", "upload", "finalize"]
    assert astro.deploys[first["astro"]["deploy_id"]]["type"] == "DAG_ONLY"
    assert astro.deployments[dep].image_tag == full["astro"]["image_tag"], "the image stays as deployed"

    (project / "dags" / "reports" / "daily.py").write_text("# the daily report, rewritten\n")
    edited = deploy(project, env_for(astro), "--dags")
    assert edited["astro"]["bundle_sha256"] != first["astro"]["bundle_sha256"]
    with tarfile.open(fileobj=io.BytesIO(astro.bundles[edited["astro"]["dag_tarball_version"]])) as archive:
        assert archive.extractfile("dags/reports/daily.py").read() == b"# the daily report, rewritten\n"


def test_dags_only_needs_dag_deploys_and_creates_nothing_without(tmp_path, airbuild_cache, astro):
    _, project = new_deployment(astro, tmp_path, "clnodags00001", dag_deploys=False)
    proc = deploy(project, env_for(astro), "--dags", check=False)
    assert proc.returncode == 2 and "DAG-only deploys are not enabled" in proc.stderr
    assert "nothing was created on Astro" in proc.stderr and astro.calls() == [("GET", "get-deployment")]


def test_bad_or_missing_token(tmp_path, airbuild_cache, astro):
    _, project = new_deployment(astro, tmp_path, "clbadtoken001")
    wrong = "not-the-token-" + "x" * 20
    proc = deploy(project, {**env_for(astro), "ASTRO_API_TOKEN": wrong}, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "HTTP 401" in proc.stderr and "the API token is invalid or expired" in proc.stderr
    assert "$ASTRO_API_TOKEN" in proc.stderr and "nothing was created on Astro" in proc.stderr
    assert "Traceback" not in proc.stderr and wrong not in proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["exit_code"] == 1
    assert astro.calls() == [("GET", "get-deployment")]

    missing = deploy(project, {**env_for(astro), "ASTRO_API_TOKEN": "", "DOCKER_CONFIG": str(tmp_path / "none")},
                     check=False)
    assert missing.returncode == 2 and "no Astro API token" in missing.stderr and "airbuild login" in missing.stderr
    other_org = astro_project(tmp_path / "other", "clbadtoken001", organization="org-other")
    forbidden = deploy(other_org, env_for(astro), check=False)
    assert forbidden.returncode == 1 and "HTTP 403" in forbidden.stderr and "no access" in forbidden.stderr
    assert run_cli(["history", project, "--json"]).stdout.strip() == "[]"


def test_unknown_deployment(tmp_path, airbuild_cache, astro):
    project = astro_project(tmp_path, "clnosuchdep01")
    proc = deploy(project, env_for(astro), check=False)
    assert proc.returncode == 1
    assert "no Deployment clnosuchdep01 in Organization org-test" in proc.stderr
    assert "HTTP 404: Deployment clnosuchdep01 not found (request req-" in proc.stderr
    assert "nothing was created on Astro" in proc.stderr and "Traceback" not in proc.stderr


def test_finalize_refused_leaves_the_deploy_unfinalized_and_says_so(tmp_path, airbuild_cache, astro):
    dep = "clrefused0001"
    repository, project = new_deployment(astro, tmp_path, dep)
    astro.faults["finalize"] = ["refuse"]
    proc = deploy(project, env_for(astro), check=False)
    assert proc.returncode == 1 and REFUSAL in proc.stderr and "HTTP 400" in proc.stderr
    (deploy_id, created), = astro.deploys.items()
    assert created["status"] == "INITIALIZED"
    version, = astro.bundles
    assert f"Astro deploy {deploy_id} (IMAGE_AND_DAG) was created and is not finalized" in proc.stderr
    assert f"the image was pushed as {astro.registry}/{repository}:{created['imageTag']}" in proc.stderr
    assert f"the DAG bundle was uploaded as version {version}" in proc.stderr
    assert "the Deployment still runs what it ran before" in proc.stderr
    assert [kind for _, kind in astro.calls()].count("finalize") == 1, "a refusal is not retried"
    assert run_cli(["history", project, "--json"]).stdout.strip() == "[]", "a failed deploy is not recorded"
    assert astro.deployments[dep].image_tag == "" and astro.deployments[dep].dag_tarball_version is None


def test_a_failed_upload_is_never_finalized(tmp_path, airbuild_cache, astro):
    dep = "clupload00001"
    _, project = new_deployment(astro, tmp_path, dep)
    astro.faults["upload"] = ["500"] * 3
    proc = deploy(project, {**env_for(astro), "AIRBUILD_REGISTRY_RETRIES": "3"}, "--dags", check=False)
    assert proc.returncode == 1 and "gave up after 3 attempts" in proc.stderr and "HTTP 500" in proc.stderr
    assert "/dag-uploads/" in proc.stderr and "sig=" not in proc.stderr, "the pre-signed URL's signature is not shown"
    assert "is not finalized" in proc.stderr and "finalize" not in [kind for _, kind in astro.calls()]


def test_5xx_and_dropped_connections_are_retried(tmp_path, airbuild_cache, astro):
    dep = "clretries0001"
    _, project = new_deployment(astro, tmp_path, dep)
    astro.faults.update({"get-deployment": ["503"], "create": ["drop"], "upload": ["drop", "500"],
                         "finalize": ["503"]})
    result = deploy(project, env_for(astro))
    assert result["astro"]["status"] == "DEPLOYED"
    assert not any(astro.faults.values()), "every fault was met"
    assert sum(1 for d in astro.deploys.values() if d["status"] == "DEPLOYED") == 1


def test_dags_that_do_not_compile_create_nothing(tmp_path, airbuild_cache, astro):
    _, project = new_deployment(astro, tmp_path, "clbrokendag01")
    (project / "dags" / "broken.py").write_text("def broken(:\n")
    for extra in ((), ("--dags",)):
        proc = deploy(project, env_for(astro), *extra, check=False)
        assert proc.returncode == 2 and "dags/broken.py:1" in proc.stderr
    assert not astro.deploys and ("POST", "create") not in astro.calls()


def test_login_saves_the_token_where_registry_credentials_are(tmp_path, airbuild_cache, astro):
    dep = "cllogin000001"
    _, project = new_deployment(astro, tmp_path, dep)
    env = {**env_for(astro), "ASTRO_API_TOKEN": "", "DOCKER_CONFIG": str(tmp_path / "docker")}
    bad = run_cli(["login", "--astro", dep, "--password-stdin"], env={**env, "ASTRO_ORGANIZATION_ID": ORG},
                  input="wrong-token-12345\n", check=False)
    assert bad.returncode == 1 and "HTTP 401" in bad.stderr and not (tmp_path / "docker" / "config.json").exists()
    good = run_cli(["login", "--target", "prod", "--password-stdin"], cwd=project / "dags", env=env,
                   input=TOKEN + "\n")
    assert f"saved for {astro.address}" in good.stdout
    saved = (tmp_path / "docker" / "config.json").read_text()
    assert astro.address in saved and TOKEN not in saved + good.stdout  # base64 of cli:TOKEN, as Docker keeps it
    assert deploy(project, env)["astro"]["status"] == "DEPLOYED"
    assert "removed the Astro API token" in run_cli(["logout", "--astro"], env=env).stdout
    assert deploy(project, env, check=False).returncode == 2


def test_the_image_registry_takes_the_token_as_user_cli(tmp_path, airbuild_cache, start_registry):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(run([tool("htpasswd"), "-Bbn", "cli", TOKEN]).stdout)
    registry = start_registry(auth=f"auth:\n  htpasswd:\n    realm: astro-test\n    path: {htpasswd}\n")
    server = AstroAPIServer(registry.address, TOKEN, ORG)
    try:
        server.add_deployment("clauthreg0001", dag_deploys=False, repository="org-test/clauthreg0001")
        project = astro_project(tmp_path, "clauthreg0001")
        result = deploy(project, env_for(server))
        assert result["astro"]["status"] == "DEPLOYED" and result["blobs_uploaded"] >= 4
        ref = f"{registry.address}/org-test/clauthreg0001:{result['astro']['image_tag']}"
        inspected = skopeo_inspect(ref, f"--creds=cli:{TOKEN}")
        assert inspected["Digest"] == result["manifest_digest"]
    finally:
        server.stop()


def test_astro_targets_in_the_manifest(tmp_path, airbuild_cache):
    project = make_deploy_project(tmp_path, "targets:\n  prod:\n    astro: {organization: org-test}\n")
    proc = run_cli(["deploy", project], check=False)
    assert proc.returncode == 2 and "astro.yaml:5" in proc.stderr and "targets.prod.astro.deployment" in proc.stderr
    (project / "astro.yaml").write_text("targets:\n  prod:\n    astro: {deployment: abc}\n    registry: x.io/y\n")
    both = run_cli(["deploy", project], check=False)
    assert both.returncode == 2 and "exactly one of `registry`" in both.stderr
    (project / "astro.yaml").write_text("targets:\n  prod:\n    astro: {deployment: abc}\n    tags: [latest]\n")
    tagged = run_cli(["deploy", project], check=False)
    assert tagged.returncode == 2 and "Astro names the repository and the tag" in tagged.stderr
    (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    bad_id = run_cli(["deploy", project, "--astro", "not/an/id"], check=False)
    assert bad_id.returncode == 2 and "not an Astro Deployment ID" in bad_id.stderr


def test_dags_are_validated_in_the_sandbox_before_anything_is_created(tmp_path, astro, debian_rootfs):
    """With Airflow in the image: failing DAGs create nothing (unless --force); a DAG-only deploy is validated
    against the Deployment's own image, not this checkout's environment."""
    dep = "clvalidate001"
    astro.add_deployment(dep, dag_deploys=True)
    env = {**env_for(astro), "AIRBUILD_CACHE_DIR": str(TEST_STORE)}
    project = with_airflow(make_deploy_project(
        tmp_path, f"targets:\n  prod:\n    astro: {{deployment: {dep}, organization: {ORG}}}\n", rootfs=debian_rootfs),
        "missing_module.py")

    for extra in ((), ("--dags",)):
        refused = deploy(project, env, *extra, check=False)
        assert refused.returncode == 1, refused.stderr[-2000:]
        failed = [f["file"] for f in json.loads(refused.stdout)["validation"]["files"] if f["errors"]]
        assert failed == ["dags/missing_module.py"] and "DAG validation failed" in refused.stderr
    assert astro.calls() == [("GET", "get-deployment")] * 2, "nothing created on Astro"

    forced = deploy(project, env, "--force")
    assert forced["astro"]["status"] == "DEPLOYED" and any("DAG validation failed" in w for w in forced["warnings"])
    skipped = deploy(project, {**env, "ASTRONOMER_SKIP_PARSE": "true"}, "--dags")
    assert skipped["validation_skipped"].startswith("ASTRONOMER_SKIP_PARSE") and skipped["astro"]["status"] == "DEPLOYED"

    # The Deployment runs Airflow without toolz; this checkout adds it and a DAG that needs it.
    (project / "dags" / "missing_module.py").unlink()
    (project / "requirements.txt").write_text(AIRFLOW_3 + "toolz==1.0.0\n")
    (project / "dags" / "uses_toolz.py").write_text(USES_TOOLZ)
    refused = deploy(project, env, "--dags", check=False)
    assert refused.returncode == 1, refused.stderr[-2000:]
    failed = {f["file"]: f["errors"] for f in json.loads(refused.stdout)["validation"]["files"] if f["errors"]}
    assert list(failed) == ["dags/uses_toolz.py"] and "toolz" in failed["dags/uses_toolz.py"][0]["message"]
    deploy(project, env)  # the image with toolz, then the same DAG-only deploy passes
    (project / "dags" / "uses_toolz.py").write_text(USES_TOOLZ + "# edited\n")
    assert deploy(project, env, "--dags")["astro"]["deploy_type"] == "DAG_ONLY"
