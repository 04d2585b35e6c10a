"""`airbuild deploy` through tests/fault_proxy.py: cut uploads, 503 with Retry-After, 500 on the manifest
PUT, a bearer token expiring mid-push, slow answers. The deploy succeeds with every blob intact, or
fails with one clear line and no tag; a fault never costs more than the image's size again in bytes.

The full campaign (random faults, many deploys) is benchmarks/fault_campaign.py.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.fault_proxy import Fault, FaultProxy, Request, image_problems, tags_on_partial_image
from tests.helpers import run_cli
from tests.registry_servers import PASSWORD, USER
from tests.test_deploy import make_deploy_project

CHUNK = 256 * 1024
ENV = {"AIRBUILD_UPLOAD_CHUNK_BYTES": str(CHUNK), "AIRBUILD_REGISTRY_RETRIES": "4"}


@dataclass
class Outcome:
    code: int
    result: dict
    stderr: str
    image_bytes: int        # what a push without faults sends: blobs, plus the manifest once per tag
    manifest_digest: str
    tags: list[str]


def deploy_through(proxy: FaultProxy, project: Path, repo: str, env: dict | None = None) -> Outcome:
    proc = run_cli(["deploy", project, "--json", "--to", f"{proxy.address}/{repo}"], env={**ENV, **(env or {})},
                   check=False)
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    built = json.loads((project / ".airbuild" / "build.json").read_text())
    digest = built["manifest_digest"]
    manifest = _store_blob(digest)
    blobs = {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}
    tags = result.get("tags") or [built["tag"]]
    size = sum(blobs.values()) + len(_store_bytes(digest)) * len(tags)
    return Outcome(proc.returncode, result, proc.stderr, size, digest, tags)


def _store_bytes(digest: str) -> bytes:
    import os

    return (Path(os.environ["AIRBUILD_CACHE_DIR"]) / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def _store_blob(digest: str) -> dict:
    return json.loads(_store_bytes(digest))


def assert_image_complete(address: str, repo: str, outcome: Outcome, token: str | None = None) -> None:
    """Every tag names the built manifest, and every blob it lists is there with the right bytes."""
    assert image_problems(address, repo, outcome.manifest_digest, outcome.tags, token) == []


def assert_no_tag(address: str, repo: str, outcome: Outcome) -> None:
    assert tags_on_partial_image(address, repo, outcome.manifest_digest, outcome.tags) == []


def assert_clear_failure(outcome: Outcome, *words: str) -> None:
    assert outcome.code == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.startswith("airbuild: error:")]
    assert len(lines) == 1, outcome.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert outcome.result.get("exit_code") == 1


def repo_name() -> str:
    return f"faults/{uuid.uuid4().hex[:12]}"


def schedule(faults: dict[tuple[str, int], Fault]):
    """A plan: the fault for the Nth request of a kind (`("blob-upload", 2)`), else none."""
    return lambda request: faults.get((request.kind, request.kind_n))


def test_cuts_503s_a_manifest_500_and_slow_answers_are_survived(tmp_path, airbuild_cache, start_registry):
    upstream = start_registry()
    project = make_deploy_project(tmp_path, "", big_include=1_200_000)
    faults = {("blob-upload", 1): Fault.cut(0.5),                  # a monolithic PUT cut halfway
              ("blob-upload", 3): Fault.cut(100_000),              # a chunk of the big layer cut
              ("blob-upload", 5): Fault.status(503, retry_after=1),
              ("upload-start", 2): Fault.status(503, retry_after=1),
              ("blob-head", 1): Fault.slow(1.5),
              ("blob-upload", 7): Fault.drop_response(),           # the registry got it, the answer was lost
              ("manifest-put", 1): Fault.status(500)}
    repo = repo_name()
    with FaultProxy(upstream.address, schedule(faults)) as proxy:
        # Transfers run side by side, so the upload faults may all land on one blob's attempts: enough
        # attempts for that (the suite's 4 are fewer than the faults scheduled here).
        outcome = deploy_through(proxy, project, repo, {"AIRBUILD_REGISTRY_TIMEOUT": "1",
                                                        "AIRBUILD_REGISTRY_RETRIES": str(len(faults) + 1)})
    assert outcome.code == 0, outcome.stderr
    assert len(proxy.injected) == len(faults), proxy.log
    assert_image_complete(upstream.address, repo, outcome)
    ratio = proxy.counters.body_bytes / outcome.image_bytes
    assert 1 <= ratio <= 2, f"{proxy.counters.body_bytes} bytes sent for a {outcome.image_bytes}-byte image"


def test_token_expiring_mid_push_is_fetched_again(tmp_path, airbuild_cache, start_registry, token_server):
    upstream = start_registry(auth=token_server.auth_config())
    project = make_deploy_project(tmp_path, "", big_include=800_000)
    repo = repo_name()
    env = {"DOCKER_CONFIG": str(tmp_path / "none"), "AIRBUILD_REGISTRY_USERNAME": USER,
           "AIRBUILD_REGISTRY_PASSWORD": PASSWORD}
    with FaultProxy(upstream.address, token_uses=4) as proxy:
        outcome = deploy_through(proxy, project, repo, env)
    assert outcome.code == 0, outcome.stderr
    assert proxy.counters.tokens_expired >= 2, proxy.log
    # concurrent transfers refused for one used-up token share its replacement
    assert len(token_server.requests) >= 1 + len(proxy.counters.expired_tokens), "a fresh token after each expiry"
    token = _token(token_server, repo)
    assert_image_complete(upstream.address, repo, outcome, token)
    assert proxy.counters.body_bytes <= 2 * outcome.image_bytes


def _token(token_server, repo: str) -> str:
    import base64

    request = urllib.request.Request(
        f"http://{token_server.address}/token?service={token_server.service}&scope=repository:{repo}:pull",
        headers={"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["token"]


def test_manifest_put_failing_for_good_leaves_no_tag(tmp_path, airbuild_cache, start_registry):
    upstream = start_registry()
    project = make_deploy_project(tmp_path, "")
    repo = repo_name()
    with FaultProxy(upstream.address, lambda r: Fault.status(500) if r.kind == "manifest-put" else None) as proxy:
        outcome = deploy_through(proxy, project, repo, {"AIRBUILD_REGISTRY_RETRIES": "2"})
    assert_clear_failure(outcome, "putting the manifest", "HTTP 500", "injected fault", "gave up after 2 attempts")
    assert_no_tag(upstream.address, repo, outcome)


def test_uploads_cut_every_time_fail_clearly_with_no_tag(tmp_path, airbuild_cache, start_registry):
    upstream = start_registry()
    project = make_deploy_project(tmp_path, "", big_include=600_000)
    repo = repo_name()
    cut_all = lambda r: Fault.cut(0.5) if r.kind == "blob-upload" and r.length > 10_000 else None  # noqa: E731
    with FaultProxy(upstream.address, cut_all) as proxy:
        outcome = deploy_through(proxy, project, repo, {"AIRBUILD_REGISTRY_RETRIES": "3"})
    assert_clear_failure(outcome, "uploading blob sha256:", "gave up after 3 attempts", proxy.address)
    assert_no_tag(upstream.address, repo, outcome)
    assert not any(kind == "PUT" and "/manifests/" in path for kind, path, _ in proxy.log), "no manifest was sent"


def test_retry_after_is_honoured(tmp_path, airbuild_cache, start_registry):
    """Three 503s asking for 1.5 s each: the client waits at least that long between them, then succeeds."""
    upstream = start_registry()
    project = make_deploy_project(tmp_path, "")
    repo = repo_name()
    times: list[float] = []

    def plan(request: Request):
        import time

        if request.kind == "upload-start" and request.kind_n <= 3:
            times.append(time.monotonic())
            return Fault.status(503, retry_after=1.5)
        if request.kind == "upload-start" and request.kind_n == 4:
            times.append(time.monotonic())
        return None

    with FaultProxy(upstream.address, plan) as proxy:
        # one transfer at a time: the gaps measured are one upload's retries, not concurrent uploads' starts
        outcome = deploy_through(proxy, project, repo, {"AIRBUILD_TRANSFERS": "1"})
    assert outcome.code == 0, outcome.stderr
    assert len(proxy.injected) == 3
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3 and all(gap >= 1.5 for gap in gaps), gaps
    assert_image_complete(upstream.address, repo, outcome)
