"""The build server's change journal (builder/project/journal.py): the walk it keeps, fed by inotify, is the
walk scan_project makes, through edits, new and removed files and directories, renames, hard links, mode
changes and ignored paths; it forgets a project (the next command walks) when it cannot follow (the event
queue overflowed, .dockerignore changed, the project moved); and a served build that it answers builds
what a build walking the project builds, also after changes made while no server ran."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest

from builder.project import tree
from builder.project.ignore import IgnoreRules
from builder.project.journal import Journal
from tests.helpers import run_cli
from tests.test_build_server import (gone, project_on_rootfs, runtime, server_pids, served,  # noqa: F401  (runtime: a fixture)
                                     started_server, wait_for)


def signatures(items: list[tree.Scanned]) -> list[tuple]:
    """What a build reads of a walk: names, kinds, link targets and the stat fields of the stamp and the stat
    cache (atime moves on every listing and is read by nothing)."""
    return [(s.relpath, s.abspath, s.link_target, s.st.st_mode, s.st.st_size, s.st.st_mtime_ns, s.st.st_ctime_ns,
             s.st.st_ino, s.st.st_nlink) for s in items]


def same_as_a_walk(journal: Journal, root: Path) -> None:
    journal.refresh()
    ignore = IgnoreRules.for_project(root)
    kept = journal.lookup(str(root), ignore)
    assert kept is not None, "still watched"
    walked = tree.scan_project(root, ignore)
    assert signatures(kept) == signatures(walked)
    digest = tree.signature_digest(kept)  # handed over with the walk
    tree.known_digest([], "")
    assert digest == tree.signature_digest(list(walked))


@pytest.fixture
def journal():
    opened = Journal()
    yield opened
    opened.close()


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "p"
    for directory in ("dags/a", "dags/b", "include", "logs"):
        (root / directory).mkdir(parents=True)
    (root / ".dockerignore").write_text("*.pyc\nlogs/\n!logs/keep.txt\n")
    for n in range(20):
        (root / ("dags/a", "dags/b", "include", "", "logs")[n % 5] / f"f{n}.py").write_text(f"{n}\n")
    return root


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kept_walk_is_the_walk_through_random_changes(journal, project, seed):
    rng = random.Random(seed)
    assert journal.watch(str(project))
    for step in range(120):
        files = sorted(p for p in project.rglob("*") if p.is_file() and not p.is_symlink() and p.name != ".dockerignore")
        dirs = sorted(p for p in project.rglob("*") if p.is_dir() and not p.is_symlink()) + [project]
        watched = [d for d in dirs if d == project / "logs" or "/logs/" not in f"{d}/"]  # links only where watched
        op = rng.choice(["write", "write", "create", "pyc", "delete", "mkdir", "rmtree", "rename", "move-dir",
                         "chmod", "link", "symlink"])
        if op == "write" and files:
            rng.choice(files).write_text(f"{step}\n" * rng.randint(1, 3))
        elif op in ("create", "pyc"):
            (rng.choice(dirs) / f"n{step}.{'pyc' if op == 'pyc' else 'py'}").write_text("new\n")
        elif op == "delete" and files:
            rng.choice(files).unlink()
        elif op == "mkdir":
            made = rng.choice(dirs) / f"d{step}"
            (made / "sub").mkdir(parents=True)
            (made / "sub" / "inner.py").write_text("inner\n")
        elif op == "rmtree" and len(dirs) > 1:
            shutil.rmtree(rng.choice(dirs[:-1]))
        elif op == "rename" and files:
            rng.choice(files).rename(rng.choice(dirs) / f"r{step}.py")
        elif op == "move-dir" and len(dirs) > 1:
            moved, into = rng.choice(dirs[:-1]), rng.choice(dirs)
            if not f"{into}/".startswith(f"{moved}/"):
                moved.rename(into / f"m{step}")
        elif op == "chmod" and files:
            os.chmod(rng.choice(files), rng.choice([0o644, 0o755]))
        elif op == "link" and files:
            os.link(rng.choice(files), rng.choice(watched) / f"h{step}.py")
        elif op == "symlink":
            os.symlink("f1.py", rng.choice(dirs) / f"s{step}")
        if rng.random() < 0.4:
            same_as_a_walk(journal, project)
    same_as_a_walk(journal, project)


def test_an_edit_is_in_the_kept_walk(journal, project):
    assert journal.watch(str(project))
    dag = project / "dags" / "a" / "f0.py"
    before = {s.relpath: s.st for s in journal.lookup(str(project), IgnoreRules.for_project(project))}
    dag.write_text("edited\n")
    journal.refresh()
    after = {s.relpath: s.st for s in journal.lookup(str(project), IgnoreRules.for_project(project))}
    assert after["dags/a/f0.py"].st_size == len("edited\n") != before["dags/a/f0.py"].st_size
    same_as_a_walk(journal, project)


def test_an_overflowed_queue_forgets_and_the_project_is_walked_again(journal, project):
    assert journal.watch(str(project))
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = project / "dags" / "a" / "f0.py", project / "dags" / "b" / "f1.py"
    for n in range(limit // 2 + 100):  # alternating: the kernel merges only repeats of the last event
        os.utime(a, ns=(n, n))
        os.utime(b, ns=(n, n))
    journal.refresh()
    assert journal.overflows == 1
    assert journal.lookup(str(project), IgnoreRules.for_project(project)) is None, "a command walks"
    assert journal.watch(str(project))
    same_as_a_walk(journal, project)


def test_new_ignore_rules_or_a_moved_project_are_walked(journal, project, tmp_path):
    assert journal.watch(str(project))
    (project / ".dockerignore").write_text("include/\n")
    journal.refresh()
    assert journal.lookup(str(project), IgnoreRules.for_project(project)) is None
    assert journal.watch(str(project))
    assert not [s for s in journal.lookup(str(project), IgnoreRules.for_project(project))
                if s.relpath.startswith("include")]
    project.rename(tmp_path / "moved")
    journal.refresh()
    assert str(project) not in journal.projects


def test_other_ignore_rules_than_the_watched_ones_walk(journal, project):
    assert journal.watch(str(project))
    assert journal.lookup(str(project), IgnoreRules.for_project(project, extra=("include",))) is None


def test_a_socket_in_the_project_is_left_to_the_walk_to_report(journal, project):
    import socket
    assert journal.watch(str(project))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(project / "dags" / "a" / "s.sock"))
        journal.refresh()
        assert str(project) not in journal.projects


def test_a_served_build_answered_by_the_journal_is_the_walked_build(tmp_path, airbuild_cache, runtime):  # noqa: F811
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    project = project_on_rootfs(tmp_path)
    started_server(tmp_path, runtime, env)
    log = runtime / "airbuild" / "server.log"
    run_cli(["build", project, "--json", "--no-validate"], env=env)
    wait_for(lambda: f"watching {project}" in log.read_text(), "the server to watch the project")
    first = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)

    (project / "dags" / "etl.py").write_text("# edited under the journal\n")
    commands = len(served(runtime))
    edited = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)
    assert len(served(runtime)) == commands + 1 and "forgetting" not in log.read_text()
    assert edited["manifest_digest"] != first["manifest_digest"]
    assert [layer["rule"] for layer in edited["layers"] if not layer["cached"]] == ["dags"]
    noop = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)
    assert noop["manifest_digest"] == edited["manifest_digest"]
    assert all(layer["cached"] for layer in noop["layers"])

    walked = json.loads(run_cli(["build", project, "--json", "--no-validate"],
                                env={**env, "AIRBUILD_SERVER": "0"}).stdout)
    assert walked["manifest_digest"] == edited["manifest_digest"], "the walk agrees: nothing was missed"
    shutil.rmtree(project / ".airbuild")
    rebuilt = json.loads(run_cli(["build", project, "--json", "--no-validate"],
                                 env={**env, "AIRBUILD_SERVER": "0"}).stdout)
    assert rebuilt["manifest_digest"] == edited["manifest_digest"]


def test_a_change_while_no_server_ran_is_built(tmp_path, airbuild_cache, runtime):  # noqa: F811
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    project = project_on_rootfs(tmp_path)
    started_server(tmp_path, runtime, env)
    log = runtime / "airbuild" / "server.log"
    first = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)
    wait_for(lambda: f"watching {project}" in log.read_text(), "the server to watch the project")
    stopped = server_pids(runtime)
    for pid in stopped:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: all(gone(pid) for pid in stopped), "the server to stop")

    (project / "dags" / "etl.py").write_text("# edited while no server ran\n")
    here = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)  # starts one
    assert here["manifest_digest"] != first["manifest_digest"]
    wait_for(lambda: len(server_pids(runtime)) > len(stopped), "a new server")
    run_cli(["build", project, "--json", "--no-validate"], env=env)  # served: the new server watches it
    wait_for(lambda: log.read_text().count(f"watching {project}:") == 2, "the new server to watch the project")
    (project / "dags" / "etl.py").write_text("# edited again, a server running\n")
    there = json.loads(run_cli(["build", project, "--json", "--no-validate"], env=env).stdout)
    walked = json.loads(run_cli(["build", project, "--json", "--no-validate"],
                                env={**env, "AIRBUILD_SERVER": "0"}).stdout)
    assert there["manifest_digest"] == walked["manifest_digest"] != here["manifest_digest"]
