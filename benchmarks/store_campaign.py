"""The store's SIGKILL campaign: builds killed at random moments, then `cache verify` and the next build's digest.

Each trial starts `airbuild build` (cold: an empty store; incremental: a store that already holds the
base and earlier builds, with a project file changed), kills its whole process group with SIGKILL
after a delay drawn uniformly within that kind of build's measured duration (so the kill lands
inside the build; one that finished first is checked too but not counted, and later delays are drawn
below its time), then runs `airbuild cache verify` (must find nothing corrupt) and builds again
(must give the digest a clean store gives for the same inputs; nothing left in the store's tmp/).

    python3 benchmarks/store_campaign.py                  # 50 kills on the Debian base (scripts/debian-rootfs)
    python3 benchmarks/store_campaign.py --kills 5 --base tiny --out result.json

Progress goes to stderr; one JSON object to stdout (and to --out).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = 3  # the incremental trials cycle through this many versions of one file: each has a reference digest
DAG = ('from datetime import datetime\nfrom airflow import DAG\n\n'
       'with DAG("d{n}", start_date=datetime(2024, 1, 1), schedule=None):\n    pass\n')


def airbuild(args: list[str], store: Path, check: bool = False) -> subprocess.CompletedProcess:
    # AIRBUILD_SERVER=0: the writer itself is killed, not a client whose build server would stop the build cleanly
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(store), "AIRBUILD_SERVER": "0"}
    env.pop("AIRBUILD_CACHE_MAX_SIZE", None)
    return subprocess.run([sys.executable, "-m", "builder", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=check)


def tiny_base(path: Path) -> None:
    """A small root filesystem (passwd with an astro user) plus 8 MB of incompressible bytes: a build writes for a while."""
    buffer = io.BytesIO()
    rng = random.Random(7)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (("etc/passwd", b"root:x:0:0::/root:/bin/sh\nastro:x:50000:0::/usr/local/airflow:/bin/sh\n"),
                           ("etc/group", b"root:x:0:\n"), ("opt/blob.bin", rng.randbytes(8 << 20))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def debian_base() -> Path:
    proc = subprocess.run([str(REPO / "scripts" / "debian-rootfs")], capture_output=True, text=True, check=True)
    return Path(proc.stdout.strip())


def make_project(root: Path, base: Path, include_mb: int) -> Path:
    project = root / "project"
    for rel, text in {"Dockerfile": "FROM scratch\n", "requirements.txt": "", "packages.txt": "",
                      "astro.yaml": f"base:\n  rootfs: {base}\n", "include/variant.txt": "variant 0\n",
                      **{f"dags/d{n}.py": DAG.format(n=n) for n in range(20)}}.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (project / "include" / "data.bin").write_bytes(random.Random(11).randbytes(include_mb << 20))
    age(project)
    return project


def age(project: Path) -> None:
    """Inputs an hour old, as in a checkout (a stat younger than the racy margin is never trusted)."""
    then = time.time() - 3600
    for dirpath, dirnames, filenames in os.walk(project):
        if ".airbuild" in dirpath:
            continue
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (then, then), follow_symlinks=False)


def set_variant(project: Path, variant: int) -> None:
    (project / "include" / "variant.txt").write_text(f"variant {variant}\n")
    age(project)


def build(project: Path, store: Path) -> tuple[str, float]:
    started = time.monotonic()
    proc = airbuild(["build", str(project), "--no-validate", "--json"], store)
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["manifest_digest"], time.monotonic() - started


def killed_build(project: Path, store: Path, delay: float) -> tuple[float, int] | None:
    """Start a build, SIGKILL its process group after `delay`; None if it was still running then (killed
    inside), else how long it took and its exit code."""
    # AIRBUILD_SERVER=0: the writer itself is killed, not a client whose build server would stop the build cleanly
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(store), "AIRBUILD_SERVER": "0"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "builder", "build", str(project), "--no-validate", "--json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=delay)
        return time.monotonic() - started, code
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def verify(store: Path) -> dict:
    proc = airbuild(["cache", "verify", "--json"], store)
    report = json.loads(proc.stdout)
    report["exit_code"] = proc.returncode
    return report


def temps_left(store: Path) -> int:
    """What a killed build left to sweep: entries of tmp/, temp files and unpacking directories anywhere."""
    found = 0
    for dirpath, dirnames, filenames in os.walk(store):
        rel = Path(dirpath).relative_to(store)
        if rel.parts and rel.parts[0] == "rootfs" and len(rel.parts) > 1:
            dirnames.clear()
            continue
        if rel == Path("tmp"):
            found += len(dirnames) + len(filenames)
            dirnames.clear()
            continue
        found += sum(name.endswith(".tmp") for name in filenames + dirnames)
    return found


def leftovers(store: Path) -> list[str]:
    tmp = store / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def campaign(kills: int, base: Path, work: Path, seed: int = 1, include_mb: int = 4,
             log=lambda message: None) -> dict:
    rng = random.Random(seed)
    project = make_project(work, base, include_mb)
    references: dict[int, str] = {}
    cold_s: list[float] = []
    for variant in range(VARIANTS):  # what a clean store gives, for each version of the project
        set_variant(project, variant)
        shutil.rmtree(project / ".airbuild", ignore_errors=True)
        references[variant], duration = build(project, work / f"clean-{variant}")
        cold_s.append(duration)
        shutil.rmtree(work / f"clean-{variant}")
    warm = work / "warm"
    set_variant(project, 0)
    build(project, warm)
    incremental_s = []
    for variant in (1, 2, 0):
        set_variant(project, variant)
        incremental_s.append(build(project, warm)[1])
    # The shortest measured build: a delay drawn below it lands inside the build even when the machine speeds up.
    durations = {"cold": min(cold_s), "incremental": min(incremental_s)}
    log(f"durations (shortest of 3): cold {durations['cold']:.2f} s, incremental {durations['incremental']:.2f} s")

    trials = []
    attempts, current = 0, 0
    while sum(t["killed_inside"] for t in trials) < kills and attempts < 3 * kills:
        i = sum(t["killed_inside"] for t in trials)
        attempts += 1
        kind = "cold" if i % 2 == 0 else "incremental"
        variant = (current + rng.randrange(1, VARIANTS)) % VARIANTS  # always a change: never a no-op build
        current = variant
        store = work / f"cold-{attempts}" if kind == "cold" else warm
        if kind == "cold":
            shutil.rmtree(project / ".airbuild", ignore_errors=True)
        set_variant(project, variant)
        delay = rng.uniform(0.05, durations[kind])
        finished = killed_build(project, store, delay)
        if finished is not None and finished[1] == 0:  # the machine got faster: draw below this build's time
            durations[kind] = min(durations[kind], finished[0])
        left_by_kill = temps_left(store)
        report = verify(store)
        digest, _ = build(project, store)
        left = leftovers(store)
        again = verify(store)
        trial = {"kind": kind, "delay_s": round(delay, 3), "killed_inside": finished is None,
                 "finished": None if finished is None else {"duration_s": round(finished[0], 2), "exit": finished[1]},
                 "verify_exit": report["exit_code"], "corrupt": len(report["corrupt"]),
                 "temps_left_by_kill": left_by_kill, "digest_ok": digest == references[variant],
                 "tmp_left_after_rebuild": left, "verify_after_rebuild_exit": again["exit_code"]}
        trials.append(trial)
        log(f"{i + 1}/{kills} {kind:<11} kill at {delay:5.2f} s "
            f"({'inside' if finished is None else f'after the end (exit {finished[1]}, {finished[0]:.2f} s): not counted'}): "
            f"{left_by_kill} temps left; verify {report['exit_code']} ({len(report['corrupt'])} corrupt), "
            f"digest {'ok' if trial['digest_ok'] else 'DIFFERENT'}")
        if kind == "cold":
            shutil.rmtree(store, ignore_errors=True)
    result_gc = gc_phase(project, warm, references, log)
    result_concurrent = concurrent_phase(project, work, references, log)
    clean = [t for t in trials if t["verify_exit"] == 0 and t["corrupt"] == 0 and t["digest_ok"]
             and not t["tmp_left_after_rebuild"] and t["verify_after_rebuild_exit"] == 0]
    inside = [t for t in trials if t["killed_inside"]]
    return {"kills": kills, "killed_inside_build": len(inside), "attempts": len(trials),
            "finished_before_kill": len(trials) - len(inside),
            "verify_clean": sum(t["verify_exit"] == 0 and t["corrupt"] == 0 for t in inside),
            "digest_as_clean_store": sum(t["digest_ok"] for t in inside),
            "survived": sum(t in clean for t in inside), "all_attempts_clean": len(clean) == len(trials),
            "temps_left_by_kills": sum(t["temps_left_by_kill"] for t in inside),
            "kills_leaving_temps": sum(t["temps_left_by_kill"] > 0 for t in inside),
            "durations_s": {k: round(v, 2) for k, v in durations.items()}, "gc": result_gc,
            "concurrent": result_concurrent, "trials": trials}


def du(store: Path) -> int:
    return json.loads(airbuild(["cache", "du", "--json"], store, check=True).stdout)["total_bytes"]


def gc_phase(project: Path, store: Path, references: dict[int, str], log) -> dict:
    """The warm store after the kills: gc to half its size, then verify, then the next build's digest."""
    before = du(store)
    limit = before // 2
    report = json.loads(airbuild(["cache", "gc", "--max-size", str(limit), "--json"], store, check=True).stdout)
    after = du(store)
    set_variant(project, 1)
    digest, _ = build(project, store)
    verified = verify(store)
    out = {"before_bytes": before, "max_size": limit, "after_bytes": after, "evicted": report["evicted"],
           "verify_exit": verified["exit_code"], "digest_ok": digest == references[1]}
    log(f"gc: {before} -> {after} bytes (limit {limit}); next build {'ok' if out['digest_ok'] else 'DIFFERENT'}")
    return out


def concurrent_phase(project: Path, work: Path, references: dict[int, str], log, rounds: int = 3) -> dict:
    """Two projects built over and over in parallel on one store while `cache gc --max-size 0` and
    `cache verify` run in a loop beside them: every build succeeds with its clean-store digest."""
    store = work / "shared"
    other = work / "other"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns(".airbuild"))
    set_variant(other, 2)
    set_variant(project, 0)
    expected = {project: references[0], other: build(other, work / "other-clean")[0]}
    shutil.rmtree(other / ".airbuild")
    # AIRBUILD_SERVER=0: the writer itself is killed, not a client whose build server would stop the build cleanly
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(store), "AIRBUILD_SERVER": "0"}
    builds_ok, builds, gcs, verifies, corrupt = 0, 0, 0, 0, 0
    for _ in range(rounds):
        for p in expected:
            (p / ".airbuild" / "stamp.json").unlink(missing_ok=True)
        running = [subprocess.Popen([sys.executable, "-m", "builder", "build", str(p), "--no-validate", "--json"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for p in expected]
        while any(proc.poll() is None for proc in running):
            gcs += airbuild(["cache", "gc", "--max-size", "0", "--json"], store).returncode == 0
            report = verify(store)
            verifies += 1
            corrupt += len(report["corrupt"])
        for proc, p in zip(running, expected):
            out, _ = proc.communicate()
            builds += 1
            builds_ok += proc.returncode == 0 and json.loads(out)["manifest_digest"] == expected[p]
    final = verify(store)
    out = {"builds": builds, "builds_ok": builds_ok, "gc_runs": gcs, "verify_runs": verifies,
           "corrupt_seen": corrupt + len(final["corrupt"])}
    log(f"concurrent: {builds_ok}/{builds} builds ok beside {gcs} gc and {verifies} verify runs, "
        f"{out['corrupt_seen']} corrupt")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--base", choices=("debian", "tiny"), default="debian",
                        help="debian: scripts/debian-rootfs (about 220 MB); tiny: 8 MB generated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airbuild-campaign-") as tmp:
        work = Path(tmp)
        base = debian_base() if args.base == "debian" else work / "base.tar.gz"
        if args.base == "tiny":
            tiny_base(base)
        result = campaign(args.kills, base, work, args.seed,
                          log=lambda message: print(message, file=sys.stderr, flush=True))
    result["base"] = args.base
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    concurrent = result["concurrent"]
    ok = (result["survived"] == result["kills"] and result["all_attempts_clean"] and result["gc"]["digest_ok"] and result["gc"]["verify_exit"] == 0
          and concurrent["builds_ok"] == concurrent["builds"] and concurrent["corrupt_seen"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
