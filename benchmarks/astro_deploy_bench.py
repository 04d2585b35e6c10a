"""Benchmark `airbuild deploy` to Astro after a one-DAG edit, against what `astro deploy` sends.

    python3 benchmarks/astro_deploy_bench.py [--dags 1000] [--include-mb 50] [--repeat 3] [--docker] [--out FILE]

The project of `build_bench.py`, deployed to the local Astro Deploy API of the test suite
(tests/astro_api_server.py) with a `docker-registry` behind its imageRepository, through a
byte-counting relay (`deploy_bench.py`'s): two Deployments, one with DAG deploys enabled
(full deploys are IMAGE_AND_DAG, `--dags` DAG_ONLY), one without (IMAGE_ONLY). After a cold deploy
each, `--repeat` rounds of "append a comment to one DAG, deploy".

`astro deploy` is not run (it needs Docker and Astro); what it sends is computed from the same
project: the image layer its Dockerfile's ONBUILD `COPY . .` makes (every file the ignore rules
allow, with the checkout's mtimes and owner, gzip level 6 as `docker push` compresses), pushed
under a new tag every deploy, and for DAG deploys the CLI's bundle (every file under dags/, gzip 6).
With `--docker`, the `COPY . .` image is also built and pushed with `docker build` + `docker push`
(`deploy_bench.py`'s, a new tag each round) to time it. Prints one JSON object on stdout; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402  (the project generator and helpers)
import deploy_bench as db  # noqa: E402  (the registry and the byte-counting relay)

REPO = bb.REPO
sys.path.insert(0, str(REPO))
from builder.project.ignore import IgnoreRules  # noqa: E402
from builder.project.tree import scan_project  # noqa: E402
from tests.astro_api_server import AstroAPIServer  # noqa: E402

TOKEN = "bench-astro-token-0123456789abcdef"
ORG = "org-bench"
ASTRO_DOCKERFILE = f"FROM {bb.BASE_TAG}\nCOPY --chown={bb.OWNER} . {bb.WORKDIR}/\nUSER astro\n"


def tar_gz(project: Path, paths: list[str]) -> int:
    """Size of a gzip-6 tarball of `paths` as Docker or the Go tar writer would make it (real metadata)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for path in paths:
                archive.add(project / path, arcname=path, recursive=False)
    return buffer.tell()


def astro_cli_sizes(project: Path) -> dict:
    """What `astro deploy` would send for this checkout: its COPY . . layer, with and without dags/, and
    the bundle `astro deploy --dags` makes (dags/ as it is on disk, no ignore rules)."""
    allowed = [s.relpath for s in scan_project(project, IgnoreRules.for_project(project))]
    dags = sorted(str(p.relative_to(project)) for p in (project / "dags").rglob("*") if p.is_file())
    return {"copy_layer_bytes": tar_gz(project, allowed),
            "copy_layer_without_dags_bytes": tar_gz(project, [p for p in allowed if not p.startswith("dags")]),
            "cli_bundle_bytes": tar_gz(project, dags)}


def deploy(project: Path, env: dict, relay: db.CountingRelay, server: AstroAPIServer, *extra: str) -> dict:
    uploads_before = sum(r.size for r in server.log if r.path.startswith("/dag-uploads/"))
    wall, done = bb.timed([sys.executable, "-m", "builder", "deploy", str(project), "--json", *extra],
                          cwd=REPO, env=env)
    result = json.loads(done.stdout)
    return {"wall_s": round(wall, 3), "internal_s": result["duration_s"], "type": result["astro"]["deploy_type"],
            "bytes_uploaded": result["bytes_uploaded"], "registry_wire_bytes": relay.reset(),
            "bundle_upload_bytes": sum(r.size for r in server.log if r.path.startswith("/dag-uploads/"))
            - uploads_before, "blobs_uploaded": result["blobs_uploaded"]}


def bench_airbuild(template: Path, work: Path, base: Path, relay: db.CountingRelay, server: AstroAPIServer,
                   repeat: int) -> dict:
    env = {**os.environ, "AIRBUILD_CACHE_DIR": str(work / "store"), "PYTHONPATH": str(REPO),
           "ASTRO_API_URL": server.url, "ASTRO_API_TOKEN": TOKEN, "ASTRO_ORGANIZATION_ID": ORG}
    out = {}
    for name, dag_deploys in (("dag_deploys", True), ("image_only", False)):
        project = work / f"airbuild-{name}"
        shutil.copytree(template, project, symlinks=True)
        deployment = f"bench{name.replace('_', '')}"
        server.add_deployment(deployment, dag_deploys=dag_deploys, repository=f"{ORG}/{deployment}")
        with open(project / "astro.yaml", "a") as handle:
            handle.write(f"base:\n  rootfs: {base}\ntargets:\n  astro:\n    astro: {{deployment: {deployment}}}\n")
        bb.log(f"airbuild: cold deploy to {deployment}")
        rounds = {"cold": deploy(project, env, relay, server)}
        kinds = [("dags_only", ("--dags",)), ("full", ())] if dag_deploys else [("full", ())]
        for kind, extra in kinds:
            rounds[kind] = []
            for n in range(repeat):
                bb.log(f"airbuild: one-DAG edit + deploy {' '.join(extra) or '(full)'} to {deployment}, "
                       f"{n + 1}/{repeat}")
                bb.edit_dag(project, n + (100 if kind == "full" else 0))
                rounds[kind].append(deploy(project, env, relay, server, *extra))
        out[name] = rounds
    return out


def summary(airbuild: dict, cli: dict, config_and_manifest: int) -> dict:
    """Bytes sent for one DAG edit, each way (medians of the rounds)."""
    def median(rounds: list[dict], key: str) -> float:
        return bb.spread([r[key] for r in rounds])["median"]

    dags, image = airbuild["dag_deploys"], airbuild["image_only"]
    return {
        "airbuild_dags_only": {"bytes": median(dags["dags_only"], "bytes_uploaded"),
                               "wall_s": median(dags["dags_only"], "wall_s")},
        "airbuild_full_dag_deploys": {"bytes": median(dags["full"], "bytes_uploaded"),
                                      "wall_s": median(dags["full"], "wall_s")},
        "airbuild_full_image_only": {"bytes": median(image["full"], "bytes_uploaded"),
                                     "wall_s": median(image["full"], "wall_s")},
        "astro_deploy_dags": {"bytes": cli["cli_bundle_bytes"]},
        "astro_deploy_full_dag_deploys": {"bytes": cli["copy_layer_without_dags_bytes"] + config_and_manifest
                                          + cli["cli_bundle_bytes"]},
        "astro_deploy_full_image_only": {"bytes": cli["copy_layer_bytes"] + config_and_manifest},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="airbuild deploy to Astro vs what astro deploy sends")
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--include-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--docker", action="store_true", help="also time docker build + docker push of COPY . .")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = bb.debian_rootfs()
    with tempfile.TemporaryDirectory(prefix="airbuild-astro-bench-") as tmp:
        work = Path(tmp)
        bb.log(f"generating {args.dags} DAGs and {args.include_mb} MiB of include/ data")
        files = bb.generate_project(work / "template", args.dags, args.include_mb)
        (work / "registry").mkdir()
        registry, port = db.start_registry(work / "registry")
        relays = [db.CountingRelay(port), db.CountingRelay(port)]
        server = AstroAPIServer(f"127.0.0.1:{relays[0].port}", TOKEN, ORG)
        try:
            airbuild = bench_airbuild(work / "template", work, base, relays[0], server, args.repeat)
            relays[0].reset()  # the API server's own image checks
            cli = astro_cli_sizes(work / "airbuild-image_only")
            docker = None
            if args.docker:
                client = bb.buildkit_client()
                docker = db.bench_docker(client, work / "template", work, base, relays[1], args.repeat,
                                         ASTRO_DOCKERFILE, tag=lambda n: f"deploy-{n}") if client \
                    else {"skipped": "no docker CLI on PATH can run BuildKit builds"}
        finally:
            server.stop()
            for relay in relays:
                relay.stop()
            registry.terminate()
            registry.wait(10)
    # A new tag's manifest (and config), a few KB: what airbuild's IMAGE_AND_DAG edit sends besides the bundle.
    last = airbuild["dag_deploys"]["full"][-1]
    report = {"project": {"dags": args.dags, "include_mb": args.include_mb, "files": files},
              "airbuild": airbuild, "astro_cli_computed": cli, "docker": docker,
              "per_dag_edit": summary(airbuild, cli, last["bytes_uploaded"] - last["bundle_upload_bytes"])}
    bb.emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
