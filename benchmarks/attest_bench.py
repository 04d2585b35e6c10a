"""What attaching SBOMs and provenance adds to `airbuild deploy`, on the quickstart project.

    python3 benchmarks/attest_bench.py [--project examples/quickstart] [--repeat 3] [--out FILE]

The project is copied to a temporary directory and built once (not timed; the store is
$AIRBUILD_CACHE_DIR, so a warm one makes this quick), then deployed `--repeat` times in each of
three ways (after one untimed deploy, so the image's blobs are mounted, not uploaded, as in a team's
later deploys), each round to fresh repositories of a `docker-registry` this script starts on a free
loopback port, behind deploy_bench's byte-counting relay:

- `--no-attest`: the image alone (the baseline: what deploy costs without this feature);
- attested: the image, an SPDX 2.3 and a CycloneDX 1.6 SBOM and SLSA provenance as referrers
  (three artifact manifests and the fallback tag's index, since distribution 2.8 has no referrers API);
- attested and signed (`--sign-key`, ECDSA P-256, DSSE envelope).

No peer tool that attaches SBOMs to an image is installed here (no syft, trivy, oras or cosign;
BuildKit's `--sbom` pulls its scanner image from Docker Hub), so the comparison is with deploy
itself: `ratio_*` = attested / `--no-attest` in the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench as bb  # noqa: E402
import deploy_bench as db  # noqa: E402

REPO = bb.REPO
MODES = {"no_attest": ["--no-attest"], "attested": [], "signed": None}


def write_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "quickstart")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="attest-bench-") as tmp:
        work = Path(tmp)
        project = work / "project"
        shutil.copytree(args.project, project, symlinks=True,
                        ignore=shutil.ignore_patterns(".airbuild"))
        (work / "registry").mkdir()
        process, port = db.start_registry(work / "registry")
        relay = db.CountingRelay(port)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        key = write_key(work / "key.pem")
        try:
            bb.log("building the project once (not timed)")
            bb.timed([sys.executable, "-m", "builder", "build", str(project), "--no-validate", "--json"],
                     cwd=REPO, env=env)
            bb.log("a first deploy (not timed): later ones mount the image's blobs, as a team's deploys do")
            bb.timed([sys.executable, "-m", "builder", "deploy", str(project), "--to",
                      f"127.0.0.1:{relay.port}/bench/warm", "--no-validate", "--no-attest", "--json"], cwd=REPO, env=env)
            rounds: dict[str, dict[str, list]] = {m: {"wall_s": [], "internal_s": [], "wire_bytes": [],
                                                      "attestation_bytes": [], "image_bytes": []} for m in MODES}
            documents: dict = {}
            for n in range(args.repeat):
                for mode, extra in MODES.items():
                    extra = ["--sign-key", str(key)] if extra is None else extra
                    target = f"127.0.0.1:{relay.port}/bench/{mode}-{n}"
                    bb.log(f"deploy {mode} {n + 1}/{args.repeat}")
                    relay.reset()
                    wall, done = bb.timed([sys.executable, "-m", "builder", "deploy", str(project), "--to", target,
                                           "--no-validate", "--json", *extra], cwd=REPO, env=env)
                    result = json.loads(done.stdout)
                    numbers = rounds[mode]
                    numbers["wall_s"].append(wall)
                    numbers["internal_s"].append(result["duration_s"])
                    numbers["wire_bytes"].append(relay.reset())
                    numbers["attestation_bytes"].append(result["attestation_bytes"])
                    numbers["image_bytes"].append(result["bytes_uploaded"])
                    if result["attestations"]:
                        documents[mode] = {a["artifactType"]: a["size"] for a in result["attestations"]}
            sizes = {}
            for fmt in ("spdx", "cyclonedx"):
                _, done = bb.timed([sys.executable, "-m", "builder", "sbom", str(project), "--format", fmt],
                                   cwd=REPO, env=env)
                sizes[fmt] = len(done.stdout.encode())
            lock = json.loads((project / "astro.lock").read_text())
        finally:
            relay.stop()
            process.terminate()
            process.wait(10)

    summary = {mode: {"wall_s": bb.spread(n["wall_s"]), "internal_s": bb.spread(n["internal_s"]),
                      "wire_bytes": n["wire_bytes"], "attestation_bytes": n["attestation_bytes"],
                      "image_bytes_uploaded": n["image_bytes"]} for mode, n in rounds.items()}
    base = summary["no_attest"]
    report = {
        "project": str(args.project), "repeat": args.repeat,
        "packages": {"debian": sum(len(s["entries"]) for k, s in lock.items()
                                   if isinstance(s, dict) and k.startswith("debian")),
                     "python": len(lock.get("python", {}).get("entries", []))},
        "sbom_bytes": sizes, "artifact_manifest_bytes": documents.get("attested"),
        "deploys": summary,
        "added_s": {m: round(summary[m]["internal_s"]["median"] - base["internal_s"]["median"], 4)
                    for m in ("attested", "signed")},
        "added_wire_bytes": {m: int(sorted(rounds[m]["wire_bytes"])[len(rounds[m]["wire_bytes"]) // 2]
                                    - sorted(rounds["no_attest"]["wire_bytes"])[args.repeat // 2])
                             for m in ("attested", "signed")},
        "ratio_wall_attested": round(summary["attested"]["wall_s"]["median"] / base["wall_s"]["median"], 3),
        "ratio_wall_signed": round(summary["signed"]["wall_s"]["median"] / base["wall_s"]["median"], 3),
    }
    bb.emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
