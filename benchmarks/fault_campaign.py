"""The registry fault campaign: many deploys through tests/fault_proxy.py with random faults, and skopeo
pushing the same image through the same faults (the strongest peer: containers/image, what Podman and
Buildah push with).

Each round draws 1-3 faults (a cut upload, 503 with Retry-After, 500, a lost answer, a slow answer,
500 on the manifest PUT) at random requests of the kinds a push makes; one round in `--persistent-every`
makes a fault permanent (the push must fail cleanly), one in `--token-every` pushes to a registry with
token auth whose tokens the proxy expires after a few requests. A round passes when the push succeeded
with every tag and blob intact, or failed with one clear line (no traceback), no tag on a partial image.

    python3 benchmarks/fault_campaign.py --rounds 40 --seed 1 > result.json
    python3 benchmarks/fault_campaign.py --rounds 0 --fuzz 1000     # bad input only: 1,000 inputs per target

Prints one JSON object: faults injected, pushes survived / failed cleanly / wrong, and the bytes sent
over the image's size (max and mean), for airbuild and for skopeo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fault_proxy import Fault, FaultProxy, classify, image_problems, tags_on_partial_image  # noqa: E402
from tests.registry_servers import PASSWORD, USER, TokenServer, start_registry  # noqa: E402
from tests.test_deploy import make_deploy_project  # noqa: E402
from tests.test_registry_faults import deploy_through  # noqa: E402
from report import emit  # noqa: E402

KINDS = ("blob-upload", "upload-start", "blob-head", "manifest-put")
TRANSIENT = {
    "blob-upload": [lambda r: Fault.cut(r.uniform(0.1, 0.9)), lambda r: Fault.status(503, retry_after=1),
                    lambda r: Fault.status(500), lambda r: Fault.drop_response(), lambda r: Fault.slow(1.5)],
    "upload-start": [lambda r: Fault.status(503, retry_after=1), lambda r: Fault.status(502),
                     lambda r: Fault.slow(1.5)],
    "blob-head": [lambda r: Fault.status(503, retry_after=1), lambda r: Fault.slow(1.5),
                  lambda r: Fault.status(429, retry_after=1)],
    "manifest-put": [lambda r: Fault.status(500), lambda r: Fault.cut(0.5), lambda r: Fault.drop_response()],
}
PERSISTENT = [("blob-upload", Fault.cut(0.5)), ("manifest-put", Fault.status(500)),
              ("upload-start", Fault.status(503, retry_after=1))]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def draw_plan(rng: random.Random, counts: dict[str, int], persistent: bool):
    if persistent:
        kind, fault = rng.choice(PERSISTENT)
        return (lambda request: fault if request.kind == kind and (kind != "blob-upload" or request.length > 4096 or request.chunked)
                else None), [f"{kind}:{fault.label} (always)"]
    faults = {}
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice([k for k in KINDS if counts.get(k)])
        faults[(kind, rng.randint(1, counts[kind]))] = rng.choice(TRANSIENT[kind])(rng)
    return (lambda request: faults.get((request.kind, request.kind_n))), [
        f"{kind}#{n}:{fault.label}" for (kind, n), fault in faults.items()]


def judge(ok: bool, problems: list[str], left: list[str], stderr: str, persistent: bool) -> str:
    if ok:
        return "survived" if not problems else "wrong: " + "; ".join(problems)
    if "Traceback" in stderr or "internal error" in stderr:
        return "wrong: a traceback"
    if left and problems:
        return "wrong: a tag on a partial image"
    return "failed cleanly" if persistent else "failed cleanly (transient faults)"


def summary(rows: list[dict]) -> dict:
    ratios = [row["bytes_ratio"] for row in rows if row["verdict"] == "survived"]  # bytes sent / a clean push's
    return {"pushes": len(rows), "faults_injected": sum(row["injected"] for row in rows),
            "survived": sum(row["verdict"] == "survived" for row in rows),
            "failed_cleanly_persistent": sum(row["verdict"] == "failed cleanly" for row in rows),
            "failed_on_transient_faults": sum(row["verdict"] == "failed cleanly (transient faults)" for row in rows),
            "wrong": sum(row["verdict"].startswith("wrong") for row in rows),
            "bytes_ratio_max": round(max(ratios), 3) if ratios else None,
            "bytes_ratio_mean": round(sum(ratios) / len(ratios), 3) if ratios else None,
            "seconds": round(sum(row["seconds"] for row in rows), 1), "rounds": rows}


def skopeo_push(proxy: FaultProxy, layout: Path, repo: str, tag: str, token_env: bool) -> tuple[bool, str]:
    creds = ["--dest-creds", f"{USER}:{PASSWORD}"] if token_env else []
    proc = subprocess.run(["skopeo", "copy", "--quiet", "--retry-times", "3", "--dest-tls-verify=false", *creds,
                           f"oci:{layout}", f"docker://{proxy.address}/{repo}:{tag}"],
                          capture_output=True, text=True, timeout=600)
    return proc.returncode == 0, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--big-mb", type=float, default=2.0, help="an incompressible file in the image (MB)")
    parser.add_argument("--persistent-every", type=int, default=8)
    parser.add_argument("--token-every", type=int, default=5)
    parser.add_argument("--no-skopeo", action="store_true")
    parser.add_argument("--fuzz", type=int, default=0, metavar="N",
                        help="also fuzz every input parser with N inputs each (tests/test_fuzz_inputs.py)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    fuzzed = fuzz(args.fuzz) if args.fuzz else None
    if not args.rounds:
        print(json.dumps({"benchmark": "fault_campaign", "fuzz": fuzzed}, indent=2))
        return
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fault-campaign-"))
    os.environ["AIRBUILD_CACHE_DIR"] = str(work / "cache")
    os.environ["DOCKER_CONFIG"] = str(work / "no-docker-config")
    (work / "token").mkdir()
    token_server = TokenServer(work / "token").start()
    plain = start_registry(work / "registry")
    tokened = start_registry(work / "registry-token", auth=token_server.auth_config())
    token_env = {"AIRBUILD_REGISTRY_USERNAME": USER, "AIRBUILD_REGISTRY_PASSWORD": PASSWORD}
    try:
        project = make_deploy_project(work, "", big_include=int(args.big_mb * 1_000_000))
        with FaultProxy(plain.address) as counting:  # a clean push: how many requests of each kind, and its bytes
            clean = deploy_through(counting, project, f"campaign/{uuid.uuid4().hex[:12]}")
        assert clean.code == 0, clean.stderr
        counts: dict[str, int] = {}
        for method, path, _ in counting.log:
            counts[classify(method, path)] = counts.get(classify(method, path), 0) + 1
        layout = project / ".airbuild" / "image"
        log(f"clean push: {clean.image_bytes} bytes, requests {counts}")
        ours, theirs = [], []
        for number in range(1, args.rounds + 1):
            persistent = number % args.persistent_every == 0
            token = number % args.token_every == 0
            upstream = tokened if token else plain
            plan, described = draw_plan(rng, counts, persistent)
            uses = rng.randint(3, 8) if token else None
            repo = f"campaign/{uuid.uuid4().hex[:12]}"
            token_value = _token(token_server, repo) if token else None
            started = time.monotonic()
            with FaultProxy(upstream.address, plan, token_uses=uses) as proxy:
                outcome = deploy_through(proxy, project, repo, token_env if token else None)
            problems = image_problems(upstream.address, repo, outcome.manifest_digest, outcome.tags, token_value)
            left = tags_on_partial_image(upstream.address, repo, outcome.manifest_digest, outcome.tags, token_value)
            row = {"round": number, "faults": described + ([f"token expires after {uses} uses"] if token else []),
                   "injected": len(proxy.counters.faults), "exit": outcome.code,
                   "verdict": judge(outcome.code == 0, problems, left, outcome.stderr, persistent),
                   "bytes_ratio": round(proxy.counters.body_bytes / outcome.image_bytes, 3),
                   "seconds": round(time.monotonic() - started, 2)}
            if outcome.code:
                row["error"] = [line for line in outcome.stderr.splitlines() if "error" in line][:1]
            ours.append(row)
            log(f"airbuild round {number}: {row['verdict']} ({', '.join(row['faults'])}; ratio {row['bytes_ratio']})")
            if args.no_skopeo or not layout.is_dir():
                continue
            repo = f"campaign/{uuid.uuid4().hex[:12]}"
            token_value = _token(token_server, repo) if token else None
            started = time.monotonic()
            with FaultProxy(upstream.address, plan, token_uses=uses) as proxy:
                ok, stderr = skopeo_push(proxy, layout, repo, "t", token)
            problems = image_problems(upstream.address, repo, outcome.manifest_digest, ["t"], token_value) if ok else []
            left = tags_on_partial_image(upstream.address, repo, outcome.manifest_digest, ["t"], token_value)
            row = {"round": number, "injected": len(proxy.counters.faults), "exit": 0 if ok else 1,
                   "verdict": judge(ok, problems, left, "", persistent),
                   "bytes_ratio": round(proxy.counters.body_bytes / (outcome.image_bytes - _manifest_size(outcome)
                                                                    * (len(outcome.tags) - 1)), 3),
                   "seconds": round(time.monotonic() - started, 2)}
            if not ok:
                row["error"] = stderr.strip().splitlines()[-1:]
            theirs.append(row)
            log(f"skopeo   round {number}: {row['verdict']} (ratio {row['bytes_ratio']})")
        result = {"benchmark": "fault_campaign", "seed": args.seed, "rounds": args.rounds,
                  "image_bytes": clean.image_bytes, "requests_per_clean_push": counts,
                  "airbuild": summary(ours), "skopeo": summary(theirs) if theirs else None, "fuzz": fuzzed}
        emit(result, args.out)
    finally:
        plain.stop()
        tokened.stop()
        token_server.stop()
        shutil.rmtree(work, ignore_errors=True)


def fuzz(examples: int) -> dict:
    """tests/test_fuzz_inputs.py with `examples` inputs per target: how many ran, and whether all ended cleanly."""
    counts = Path(tempfile.mkdtemp(prefix="fuzz-counts-")) / "counts.jsonl"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not cli",
                           str(REPO / "tests" / "test_fuzz_inputs.py")], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "AIRBUILD_FUZZ_EXAMPLES": str(examples),
                               "AIRBUILD_FUZZ_COUNTS": str(counts)})
    by_target: dict[str, int] = {}
    for line in counts.read_text().splitlines() if counts.exists() else []:
        record = json.loads(line)
        by_target[record["target"]] = by_target.get(record["target"], 0) + record["inputs"]
    shutil.rmtree(counts.parent, ignore_errors=True)
    summary_line = (proc.stdout.strip().splitlines() or [""])[-1]
    log(f"fuzz: {summary_line}")
    return {"examples_per_target": examples, "inputs": sum(by_target.values()), "by_target": by_target,
            "all_clean": proc.returncode == 0, "pytest": summary_line,
            "failures": [line for line in proc.stdout.splitlines() if line.startswith("FAILED")],
            "seconds": round(time.monotonic() - started, 1)}


def _manifest_size(outcome) -> int:
    return len((Path(os.environ["AIRBUILD_CACHE_DIR"]) / "blobs" / "sha256" /
                outcome.manifest_digest.split(":")[1]).read_bytes())


def _token(token_server: TokenServer, repo: str) -> str:
    from tests.test_registry_faults import _token as token

    return token(token_server, repo)


if __name__ == "__main__":
    main()
