"""Units of the BuildKit backend that need no engine: layer normalisation, the project paths a RUN names,
the Dockerfile checks per backend, --secret parsing."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from builder.project.dockerfile import check_instruction, parse_dockerfile
from builder.common.errors import InputError
from builder.layers.normalise import normalise
from builder.layers.tar import write_tar
from builder.project.manifest import SecretSpec
from builder.actions.dockerfile.run_paths import used_entries
from builder.project.tree import Entry, ProjectTree

NOW = int(time.time())


def tar_stream(*entries: tuple) -> io.BytesIO:
    """A layer as an engine writes one: (name, type, data or link, extra TarInfo fields)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload, fields in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.uname, info.gname = kind, NOW, "root", "shadow"
            for key, value in fields.items():
                setattr(info, key, value)
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload or ""
                archive.addfile(info)
    buffer.seek(0)
    return buffer


def entry(name, kind=tarfile.REGTYPE, payload=b"", **fields):
    return (name, kind, payload, fields)


def pyc(source_mtime: int) -> bytes:
    return b"\xa7\r\r\n" + b"\0\0\0\0" + source_mtime.to_bytes(4, "little") + (10).to_bytes(4, "little") + b"code"


def test_normalised_layer(tmp_path):
    source_mtime = NOW - 5
    layer = tar_stream(
        entry("./etc", tarfile.DIRTYPE, mode=0o755),
        entry("etc/.wh.issue", mode=0),
        entry("etc/shadow", payload=b"root:*:19000:0:99999:7:::\nbob:!:%d:0:99999:7:::\n" % (NOW // 86400),
              mode=0o640, gid=42),
        entry("opt/app/.wh..wh..opq"),
        entry("opt/app/main.py", payload=b"print(1)\n", mtime=source_mtime),
        entry("opt/app/__pycache__/main.cpython-311.pyc", payload=pyc(source_mtime)),
        entry("opt/app/__pycache__/old.cpython-311.pyc", payload=pyc(12345)),
        entry("opt/app/old.py", payload=b"x = 1\n", mtime=NOW - 1),
        entry("usr/bin/ping", payload=b"ELF", mode=0o4755,
              pax_headers={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}),
        entry("usr/bin/ping6", tarfile.LNKTYPE, "usr/bin/ping"),
        entry("var/log/dpkg.log", payload=b"2026-11-27 installed\n"),
        entry("var/lib/apt/lists/deb_Packages", payload=b"Package: x\n"),
        entry("var/lib/apt/lists/.wh.old_Packages"),
        entry("root/.cache/pip/http/x", payload=b"cached"),
        entry("dev/null", tarfile.CHRTYPE),
    )
    items, dropped = normalise([layer], tmp_path / "staging", epoch=1000)
    by_path = {i.path: i for i in items}
    assert list(by_path) == sorted(by_path)
    assert {"var/log/dpkg.log", "var/lib/apt/lists/deb_Packages", "root/.cache/pip/http/x"} <= set(dropped)
    assert "dev/null (a device node or FIFO: not kept)" in dropped
    assert {"etc/.wh.issue", "opt/app/.wh..wh..opq", "var/lib/apt/lists/.wh.old_Packages"} <= set(by_path), \
        "whiteouts survive, even under volatile directories"
    assert all(i.mtime == 1000 for i in items), "clamped to SOURCE_DATE_EPOCH"
    assert by_path["etc/shadow"].gid == 42 and by_path["etc/shadow"].mode == 0o640
    assert Path(by_path["etc/shadow"].source).read_bytes() == b"root:*:19000:0:99999:7:::\nbob:!::0:99999:7:::\n"
    assert by_path["usr/bin/ping"].mode == 0o4755
    assert by_path["usr/bin/ping"].xattrs == (("security.capability", "\x01\x00\x00\x02"),)
    assert by_path["usr/bin/ping6"].kind == "hardlink" and by_path["usr/bin/ping6"].link == "usr/bin/ping"
    fresh = Path(by_path["opt/app/__pycache__/main.cpython-311.pyc"].source).read_bytes()
    assert int.from_bytes(fresh[8:12], "little") == 1000, "the pyc records its source's clamped mtime"
    stale = Path(by_path["opt/app/__pycache__/old.cpython-311.pyc"].source).read_bytes()
    assert int.from_bytes(stale[8:12], "little") == 12345, "a stale pyc stays stale"

    out = io.BytesIO()
    write_tar(items, out.write, 0)
    out.seek(0)
    with tarfile.open(fileobj=out) as written:
        members = {m.name: m for m in written.getmembers()}
    assert members["usr/bin/ping"].pax_headers["SCHILY.xattr.security.capability"] == "\x01\x00\x00\x02"
    assert all(m.uname == "" and m.gname == "" and m.mtime == 1000 for m in members.values())


def test_merged_layers_apply_whiteouts_to_the_earlier_ones(tmp_path):
    workdir = tar_stream(entry("srv", tarfile.DIRTYPE), entry("srv/app", tarfile.DIRTYPE),
                         entry("srv/app/keep", payload=b"k"))
    run = tar_stream(entry("srv/app/.wh.keep"), entry("srv/other", payload=b"o"),
                     entry("srv/.wh..wh..opq"), entry("srv/new", payload=b"n"))
    items, _ = normalise([workdir, run], tmp_path / "s", epoch=0)
    paths = [i.path for i in items]
    assert "srv/app/keep" not in paths and "srv/app" not in paths, "removed by the later layer's whiteouts"
    assert {"srv/other", "srv/new", "srv/.wh..wh..opq", "srv/app/.wh.keep"} <= set(paths), \
        "the later layer's own entries stay, whatever their order relative to its opaque marker"


def tree(*paths: str) -> ProjectTree:
    entries = {}
    for path in paths:
        kind = "dir" if path.endswith("/") else "file"
        path = path.rstrip("/")
        entries[path] = Entry(path, kind, 0o755 if kind == "dir" else 0o644)
    return ProjectTree(Path("/p"), entries)


def run_inst(text: str, json_form: bool = False):
    from builder.project.dockerfile import Instruction

    args = tuple(text.split("\0")) if json_form else (text,)
    return Instruction("RUN", args, (), json_form, 3, f"RUN {text}")


PROJECT = tree("include/", "include/pkg/", "include/pkg/setup.py", "include/tools/", "include/tools/a.sh",
               "include/tools/b.txt", "include/data.csv", "requirements-dev.txt", "dags/", "dags/x.py")


@pytest.mark.parametrize("command, cwd, expected", [
    ("pip install --no-deps ./include/pkg[extra]", "/usr/local/airflow", {"include/pkg", "include/pkg/setup.py"}),
    ("sh include/tools/a.sh > /opt/out", "/usr/local/airflow",
     {"include/tools", "include/tools/a.sh", "include/tools/b.txt"}),
    ("pip install --requirement=requirements-dev.txt", "/usr/local/airflow", {"requirements-dev.txt"}),
    ("cp /usr/local/airflow/include/data.csv /opt/", "/", {"include", "include/pkg", "include/pkg/setup.py",
                                                          "include/tools", "include/tools/a.sh",
                                                          "include/tools/b.txt", "include/data.csv"}),
    ("apt-get install -y jq && echo include > /tmp/x", "/opt", set()),
    ("echo $HOME/include https://x/include", "/usr/local/airflow", set()),
])
def test_project_paths_a_run_names(command, cwd, expected):
    assert set(used_entries(run_inst(command), PROJECT, cwd, "/usr/local/airflow")) == expected


def test_dot_is_the_whole_project():
    assert set(used_entries(run_inst("pip install ."), PROJECT, "/usr/local/airflow", "/usr/local/airflow")) == \
        set(PROJECT.entries)
    exec_form = run_inst("python3\0dags/x.py", json_form=True)
    assert set(used_entries(exec_form, PROJECT, "/usr/local/airflow", "/usr/local/airflow")) == {"dags", "dags/x.py"}


def test_backends_and_the_dockerfile(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("ARG V=1\nARG BASE=img:${V}\nFROM $BASE\nARG V\nRUN echo $V\nADD x /x\nSHELL bash\n")
    parsed = parse_dockerfile(path, {"V": "2"})
    assert parsed.base_ref == "img:2" and dict(parsed.global_args) == {"V": "2", "BASE": "img:2"}
    arg, run, add, shell = parsed.instructions
    check_instruction(run, path, "auto")
    check_instruction(run, path, "buildkit")
    with pytest.raises(InputError, match="native backend cannot run it") as native:
        check_instruction(run, path, "native")
    assert native.value.line == 5
    with pytest.raises(InputError, match="ADD is not supported yet"):
        check_instruction(add, path, "auto")
    with pytest.raises(InputError, match="SHELL takes a JSON array"):
        check_instruction(shell, path, "auto")


@pytest.mark.parametrize("text, expected", [
    ("id=token,src=/run/tok", SecretSpec(id="token", src="/run/tok")),
    ("id=token,source=tok.txt,type=file", SecretSpec(id="token", src="tok.txt")),
    ("id=npm,env=NPM_TOKEN", SecretSpec(id="npm", env="NPM_TOKEN")),
    ("id=GITHUB_TOKEN", SecretSpec(id="GITHUB_TOKEN", env="GITHUB_TOKEN")),
])
def test_secret_options(text, expected):
    assert SecretSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["src=/x", "id=a,bogus=1", "id=a b,src=x"])
def test_bad_secret_options(text):
    with pytest.raises(InputError, match="--secret"):
        SecretSpec.parse(text)
