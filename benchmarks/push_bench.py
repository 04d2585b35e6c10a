"""Benchmark a cold `airbuild deploy` of the quickstart against `skopeo copy` of the same image.

    python3 benchmarks/push_bench.py [--repeat 3] [--project examples/quickstart] [--out FILE]

The quickstart is built once (`--locked` with tests/fixtures/quickstart.astro.lock, no
validation, in the store AIRBUILD_CACHE_DIR names or the default one) into an OCI layout.
Then, for each round, each tool pushes that image to an empty repository of a `docker-registry`
this script starts fresh on a loopback port for that push (so nothing is mounted or already
there): `skopeo copy oci:LAYOUT:TAG docker://...`, `airbuild deploy --to ... --no-validate`
(the whole command: its no-op build, the gates, the push, the SBOMs and provenance; the SBOMs
already in the store), airbuild again with AIRBUILD_TRANSFERS=1 (one blob at a time, as before
concurrent transfers), airbuild's push alone (`Pusher.push` of the built image in a `python3 -c`,
what deploy runs once the image is built), `deploy --no-attest` (the image alone, what skopeo
sends) and a deploy with the store's SBOMs of this image dropped first (as a new image's first
deploy writes them). Prints one JSON object on stdout; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # builder, for the SBOM record's name
import build_bench as bb  # noqa: E402
from deploy_bench import start_registry  # noqa: E402
from report import emit, machine  # noqa: E402

REPO = bb.REPO
# airbuild's push alone (what `deploy` runs once the image is built), timed inside the process: no CLI start.
PUSH_ONLY = """
import json, sys, time
from builder.registry.connect import open_client
from builder.registry.push import Pusher
from builder.common.paths import default_store_dir
from builder.store.store import Store
registry, repository, digest = sys.argv[1:4]
started = time.perf_counter()
with open_client(registry) as client:
    store = Store(default_store_dir())
    stats = Pusher(client, store, repository).push(digest, ["latest"])
print(json.dumps({"s": time.perf_counter() - started, "blobs": stats.blobs_uploaded}))
"""
LOCK = REPO / "tests" / "fixtures" / "quickstart.astro.lock"


def store_dir() -> Path:
    return Path(os.environ.get("AIRBUILD_CACHE_DIR") or Path.home() / ".cache" / "airbuild" / "store")


def forget_registry(store: Path, address: str) -> None:
    """Drop what the store knows of a registry at this address (a fresh one may reuse a port): no mount attempts."""
    record = store / "registry-blobs" / f"{hashlib.sha256(address.encode()).hexdigest()[:32]}.json"
    record.unlink(missing_ok=True)


def forget_sboms(store: Path, project: Path, digest: str) -> None:
    """Drop the store's SBOMs of this image, so the next deploy writes them as a new image's first deploy does."""
    from builder.deploy.attestations import ImageId, sboms_key
    from builder.engine.build import image_name
    from builder.project.manifest import load_manifest

    manifest, _ = load_manifest(project)
    image = ImageId(image_name(project, manifest.name), digest)
    (store / "sboms" / f"{sboms_key(project / manifest.lockfile, image)}.json").unlink(missing_ok=True)


def build(project: Path, layout: Path, env: dict) -> dict:
    bb.log("airbuild: building the quickstart (--locked, no validation) into an OCI layout")
    _, done = bb.timed([sys.executable, "-m", "builder", "build", str(project), "--locked", "--no-validate",
                        "--oci", str(layout), "--json"], cwd=REPO, env=env)
    return json.loads(done.stdout)


def push_round(work: Path, n: int, layout: Path, tag: str, digest: str, project: Path, env: dict,
               store: Path) -> dict:
    out = {}
    for name in ("skopeo", "airbuild_new_sboms", "airbuild", "airbuild_serial", "airbuild_push_only",
                 "airbuild_no_attest"):
        (work / f"registry-{name}-{n}").mkdir()
        registry, port = start_registry(work / f"registry-{name}-{n}")
        address = f"127.0.0.1:{port}"
        try:
            if name == "airbuild_push_only":
                forget_registry(store, address)
                command = [sys.executable, "-c", PUSH_ONLY, address, "bench/push", digest]
                run_env = env
            elif name == "skopeo":
                command = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                           f"docker://{address}/bench/skopeo:latest"]
                run_env = None
            else:
                forget_registry(store, address)
                if name == "airbuild_new_sboms":  # as the first deploy of this image: its SBOMs written again
                    forget_sboms(store, project, digest)
                command = [sys.executable, "-m", "builder", "deploy", str(project), "--to", f"{address}/bench/{name}",
                           "--no-validate", "--force", "--json", *(["--no-attest"] if name == "airbuild_no_attest" else [])]
                run_env = {**env, **({"AIRBUILD_TRANSFERS": "1"} if name == "airbuild_serial" else {})}
            bb.log(f"round {n + 1}: {name} -> {address}")
            seconds, done = bb.timed(command, cwd=REPO, env=run_env)
            out[name] = round(seconds, 3)
            if name == "airbuild_push_only":
                out["airbuild_push_only_internal"] = round(json.loads(done.stdout)["s"], 3)
            if name == "airbuild":
                result = json.loads(done.stdout)
                out["airbuild_internal_s"] = result.get("duration_s")
                out["airbuild_blobs_uploaded"] = result.get("blobs_uploaded")
            if name in ("airbuild_no_attest", "airbuild_new_sboms"):
                out[f"{name}_internal_s"] = json.loads(done.stdout).get("duration_s")
        finally:
            registry.terminate()
            registry.wait(10)
            shutil.rmtree(work / f"registry-{name}-{n}", ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="cold airbuild deploy vs skopeo copy of the quickstart")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "quickstart")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    compileall.compile_dir(REPO / "builder", quiet=1)  # as pip install does (see build_bench.py)
    store = store_dir()
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(store), "PYTHONPATH": str(REPO)}
    env.pop("AIRBUILD_TRANSFERS", None)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="airbuild-pushbench-") as tmp:
        work = Path(tmp)
        project = work / "quickstart"
        shutil.copytree(args.project, project, ignore=shutil.ignore_patterns(".airbuild", "astro.lock"))
        if args.project.resolve() == (REPO / "examples" / "quickstart").resolve():
            shutil.copy(LOCK, project / "astro.lock")
        built = build(project, work / "layout", env)
        manifest = json.loads((work / "layout" / "blobs" / "sha256" /
                               built["manifest_digest"].removeprefix("sha256:")).read_bytes())
        rounds = [push_round(work, n, work / "layout", built["tag"], built["manifest_digest"], project, env, store) for n in range(args.repeat)]

    def median(key: str) -> float:
        return bb.spread([r[key] for r in rounds])["median"]

    report = {
        "image": {"manifest_digest": built["manifest_digest"], "layers": len(manifest["layers"]),
                  "bytes": manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])},
        "skopeo_copy_s": bb.spread([r["skopeo"] for r in rounds]),
        "airbuild_deploy_s": bb.spread([r["airbuild"] for r in rounds]),
        "airbuild_deploy_internal_s": bb.spread([r["airbuild_internal_s"] for r in rounds]),
        "airbuild_deploy_one_at_a_time_s": bb.spread([r["airbuild_serial"] for r in rounds]),
        "airbuild_push_only_s": bb.spread([r["airbuild_push_only"] for r in rounds]),
        "airbuild_push_only_internal_s": bb.spread([r["airbuild_push_only_internal"] for r in rounds]),
        "airbuild_deploy_no_attest_s": bb.spread([r["airbuild_no_attest"] for r in rounds]),
        "airbuild_deploy_new_sboms_s": bb.spread([r["airbuild_new_sboms"] for r in rounds]),
        "ratio_airbuild_to_skopeo": round(median("airbuild") / median("skopeo"), 2),
        "ratio_no_attest_to_skopeo": round(median("airbuild_no_attest") / median("skopeo"), 2),
        "ratio_new_sboms_to_skopeo": round(median("airbuild_new_sboms") / median("skopeo"), 2),
        "ratio_push_only_to_skopeo": round(median("airbuild_push_only") / median("skopeo"), 2),
        "ratio_one_at_a_time_to_skopeo": round(median("airbuild_serial") / median("skopeo"), 2),
        "rounds": rounds,
        "skopeo_version": subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.strip(),
        "machine": machine(load_before[0]),
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
