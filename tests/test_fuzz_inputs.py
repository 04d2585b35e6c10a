"""Bad input, fuzzed with hypothesis: astro.yaml, .dockerignore, Dockerfile, requirements.txt, packages.txt,
image tarballs and OCI layouts as bases. Each input is accepted or refused with an InputError (exit 2,
naming the file); never another exception, which the CLI would report as an internal error (exit 70).

The parsers the CLI calls are driven in-process (hundreds of inputs a second); a few CLI builds on
fuzzed files check the exit code end to end. `AIRBUILD_FUZZ_EXAMPLES` sets the examples per target
(default 150; benchmarks/fault_campaign.py --fuzz runs thousands), and `AIRBUILD_FUZZ_COUNTS=FILE`
appends how many inputs each target ran, as JSON lines.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from builder.actions.debian.package_list import parse_package_list
from builder.actions.inputs import listed_lines
from builder.actions.python.resolve import check_against_base, requirement_lines
from builder.bases.archive import import_archive
from builder.bases.layout import from_oci_layout
from builder.common.errors import AirbuildError, InputError
from builder.common.text import read_utf8
from builder.oci.descriptors import Platform
from builder.project.dockerfile import check_instruction, parse_dockerfile
from builder.project.ignore import IgnoreRules
from builder.project.manifest import load_manifest
from builder.store.store import Store
from tests import hostile_images as hi
from tests.helpers import REPO, run_cli
from tests.projects import make_project

EXAMPLES = int(os.environ.get("AIRBUILD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
PLATFORM = Platform("linux", "amd64")
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def record_counts():
    yield
    target = os.environ.get("AIRBUILD_FUZZ_COUNTS")
    if target:
        with open(target, "a") as out:
            for name, count in COUNTS.items():
                out.write(json.dumps({"target": name, "inputs": count}) + "\n")


def counted(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def accepted_or_input_error(call, name: str):
    """Run `call`: its value, or None after an InputError that names what is wrong; anything else fails."""
    counted(name)
    try:
        return call()
    except InputError as exc:
        assert str(exc).strip(), "an error with no message"
        return None


@pytest.fixture(scope="module")
def scratch():
    directory = Path(tempfile.mkdtemp(prefix="airbuild-fuzz-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def fresh(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


# -- text a user could write ------------------------------------------------------------------------

ANY_TEXT = st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
ANY_BYTES = st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def lines_of(words: st.SearchStrategy[str], max_lines: int = 12) -> st.SearchStrategy[str]:
    return st.lists(st.lists(words, max_size=5).map(" ".join), max_size=max_lines).map("\n".join)


# -- astro.yaml -----------------------------------------------------------------------------------

MANIFEST_KEYS = ["name", "platform", "workdir", "owner", "base", "dockerfile", "lockfile", "compression",
                 "validation", "index_url", "extra_index_urls", "apt", "layers", "targets", "backend",
                 "build_args", "secrets", "cache", "user", "group", "image", "oci", "archive", "rootfs", "debian",
                 "suite", "packages", "mirror", "components", "keyring", "users", "registry", "tags", "codec",
                 "level", "timeout_s", "sandbox", "id", "src", "env", "repo", "mode", "rule", "file", "sources",
                 "uri", "suites", "uid", "gid", "home", "prod", "deployment_id", "insecure", "prod.x"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["linux/amd64", "zstd", "gzip", "auto", "../x", "/abs",
                                                           "bookworm", "127.0.0.1:5000/a/b", "astro", "0", "~",
                                                           "x" * 300, "a:b@sha256:" + "0" * 64]))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(MANIFEST_KEYS), st.text(max_size=8)),
                                                 inner, max_size=5)), max_leaves=25)
MANIFESTS = st.one_of(
    st.dictionaries(st.sampled_from(MANIFEST_KEYS), YAML_VALUES, max_size=6).map(
        lambda data: yaml.safe_dump(data, allow_unicode=True)),
    ANY_TEXT,
    st.sampled_from(["a: &x [*x]", "&a [*a, *a]", "[" * 500, "{a: " * 200, "!!python/object:os.system x",
                     "a: !!binary AAAA", "\x00", "\ufeffname: x", "name: x\n\tname: y", "%YAML 9.9\n---\n",
                     "- " * 300, "base: {rootfs: x, oci: y}", "targets: {prod: {}}", "? [a]\n: b",
                     "a: &a [" + ",".join(["*a"] * 20) + "]"]),
    st.tuples(st.sampled_from((REPO / "astro.yaml.example").read_text().splitlines(keepends=True) or [""]),
              st.text(max_size=10)).map(lambda pair: pair[0][:len(pair[0]) // 2] + pair[1] + pair[0][len(pair[0]) // 2:]),
)


@FUZZ
@given(content=st.one_of(MANIFESTS, ANY_BYTES))
def test_astro_yaml(scratch, content):
    project = fresh(scratch)
    write(project / "astro.yaml", content)
    accepted_or_input_error(lambda: load_manifest(project), "astro.yaml")


# -- .dockerignore --------------------------------------------------------------------------------

IGNORE_WORDS = st.one_of(st.sampled_from(["*", "**", "!", "?", "[", "]", "[!a-]", "\\", "/", "..", ".", "#",
                                          "**/", "/**", "[a-z]", "\\*", "!**", "dags/", "*.py", "a/**/b", "[^]"]),
                         st.text(max_size=8))


@FUZZ
@given(text=st.one_of(lines_of(IGNORE_WORDS.map(lambda w: w.replace(" ", ""))), ANY_TEXT, ANY_BYTES),
       paths=st.lists(st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=30), max_size=5))
def test_dockerignore(scratch, text, paths):
    project = fresh(scratch)
    write(project / ".dockerignore", text)

    def match():
        rules = IgnoreRules.for_project(project)
        for path in paths + ["dags/a.py", "include/x/y.csv", "a/b"]:
            rules.ignored(path)
            rules.may_reinclude_below(path)
    accepted_or_input_error(match, ".dockerignore")


# -- Dockerfile -----------------------------------------------------------------------------------

KEYWORDS = ["FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "USER", "WORKDIR", "EXPOSE", "CMD", "ENTRYPOINT",
            "SHELL", "ONBUILD", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "MAINTAINER", "from", "FROM scratch AS"]
DOCKER_WORDS = st.one_of(st.sampled_from(["--chown=1:2", "--from=x", "--chmod=777", "--link", "--mount=type=secret",
                                          "$X", "${X:-y}", "${X:+", "[\"a\",", "\"b\"]", "[]", "\\", "<<EOF",
                                          "EOF", "=", "a=b", "astro", "/", "..", "../..", "*", "quay.io/x:1",
                                          "${", "$", "\t", "#", "# escape=`", "# syntax=x", "AS", "--platform=x"]),
                         st.text(max_size=8))
DOCKERFILES = st.one_of(
    st.lists(st.tuples(st.sampled_from(KEYWORDS), st.lists(DOCKER_WORDS, max_size=5)), max_size=10).map(
        lambda lines: "\n".join(k + " " + " ".join(a) for k, a in lines)),
    st.lists(st.tuples(st.sampled_from(KEYWORDS), st.lists(DOCKER_WORDS, max_size=5)), max_size=10).map(
        lambda lines: "FROM quay.io/astronomer/astro-runtime:12.1.0\n" + "\n".join(k + " " + " ".join(a) for k, a in lines)),
    ANY_TEXT, ANY_BYTES)


@FUZZ
@example(text="HEALTHCHECK 0\x85 --chown=1:2", args={}, backend="auto")  # found: the Go parser split U+0085
@given(text=DOCKERFILES, args=st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3),
       backend=st.sampled_from(["auto", "native", "buildkit"]))
def test_dockerfile(scratch, text, args, backend):
    project = fresh(scratch)
    path = write(project / "Dockerfile", text)

    def parse():
        dockerfile = parse_dockerfile(path, args)
        for inst in dockerfile.instructions:
            check_instruction(inst, path, backend)
    accepted_or_input_error(parse, "Dockerfile")


# -- requirements.txt -------------------------------------------------------------------------------

REQ_WORDS = st.one_of(st.sampled_from(["-r", "--requirement", "-c", "-e", "--hash=sha256:00", "requests",
                                       "apache-airflow-providers-x", ">=1", "==2.*", "~=1.0", "[extra]", ";",
                                       "python_version<'3.12'", "@", "https://x/y.whl", "git+https://x", "#",
                                       "-r other.txt", "--index-url", "\\", "pkg (>=1)", "===1", ",", "!="]),
                      st.text(max_size=8))


@FUZZ
@given(text=st.one_of(lines_of(REQ_WORDS), ANY_TEXT, ANY_BYTES), other=st.one_of(lines_of(REQ_WORDS), ANY_BYTES),
       base=st.dictionaries(st.sampled_from(["requests", "apache-airflow", "pkg", "x"]),
                            st.sampled_from(["1.0", "2.0.0", "not a version", "", "1!2.0.post1"]), max_size=3))
def test_requirements_txt(scratch, text, other, base):
    project = fresh(scratch)
    path = write(project / "requirements.txt", text)
    write(project / "other.txt", other)

    def read():
        listed_lines(read_utf8(path))  # what the python action reads first: does the file list anything?
        requirement_lines(path)
        check_against_base(path, base)
    accepted_or_input_error(read, "requirements.txt")


# -- packages.txt -----------------------------------------------------------------------------------

PKG_WORDS = st.one_of(st.sampled_from(["curl", "libpq-dev", "gcc=4:12.2.0-3", "a=", "=1", "pkg:amd64", "x/bookworm",
                                       "#", "\r", "g++", "UPPER", "lib1.0"]), st.text(max_size=8))


@FUZZ
@given(text=st.one_of(lines_of(PKG_WORDS), ANY_TEXT, ANY_BYTES))
def test_packages_txt(scratch, text):
    project = fresh(scratch)
    path = write(project / "packages.txt", text)
    accepted_or_input_error(lambda: parse_package_list(path.read_text(encoding="utf-8", errors="replace"), path),
                            "packages.txt")


# -- image tarballs and OCI layouts as bases ---------------------------------------------------------

GOOD_LAYER = hi.layer([hi.entry("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")])
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65), st.floats(allow_nan=False),
                                     st.text(max_size=20), st.sampled_from(["sha256:" + "0" * 64, "sha256:../../x",
                                                                            "sha256:", "linux", "amd64",
                                                                            "application/vnd.oci.image.layer.v1.tar"])),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["manifests", "digest", "size", "mediaType", "config",
                                                        "layers", "rootfs", "diff_ids", "os", "architecture",
                                                        "annotations", "platform", "schemaVersion", "Config",
                                                        "Layers", "RepoTags"]), inner, max_size=5)), max_leaves=20)


def _mutate(data: bytes, cuts: list[tuple[int, bytes]]) -> bytes:
    for position, insert in cuts:
        position %= max(1, len(data))
        data = data[:position] + insert + data[position + len(insert):]
    return data


@FUZZ
@given(part=st.sampled_from(["index.json", "manifest", "config", "layer"]),
       replacement=st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)),
       mutate=st.booleans(), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
                                           max_size=4))
def test_oci_layout_base(scratch, part, replacement, mutate, cuts):
    directory = fresh(scratch)
    layout = hi.oci_layout(directory / "layout", [GOOD_LAYER])
    index = json.loads((layout / "index.json").read_text())
    manifest_path = layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(manifest_path.read_bytes())
    target = {"index.json": layout / "index.json", "manifest": manifest_path,
              "config": layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1],
              "layer": layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]}[part]
    target.write_bytes(_mutate(target.read_bytes(), cuts) if mutate else replacement)
    store = Store(directory / "store")
    try:
        accepted_or_input_error(lambda: _use_base(store, from_oci_layout(directory, "layout", store, PLATFORM)),
                                "oci-layout")
    finally:
        store.close()


@FUZZ
@given(kind=st.sampled_from(["docker", "oci"]), cuts=st.lists(st.tuples(st.integers(0, 20_000),
                                                                         st.binary(min_size=1, max_size=16)),
                                                               max_size=4),
       truncate=st.one_of(st.none(), st.integers(0, 20_000)), raw=st.one_of(st.none(), st.binary(max_size=600)))
def test_image_tarball_base(scratch, kind, cuts, truncate, raw):
    directory = fresh(scratch)
    path = directory / "image.tar"
    if raw is not None:
        path.write_bytes(raw)
    else:
        if kind == "docker":
            hi.docker_archive(path, [GOOD_LAYER])
        else:
            layout = hi.oci_layout(directory / "layout", [GOOD_LAYER])
            with tarfile.open(path, "w") as archive:
                archive.add(layout, arcname=".")
        data = _mutate(path.read_bytes(), cuts)
        path.write_bytes(data[:truncate] if truncate is not None else data)
    store = Store(directory / "store")
    try:
        accepted_or_input_error(lambda: _use_base(store, import_archive(store, path)), "image-tarball")
    finally:
        store.close()


def _use_base(store: Store, base) -> None:
    """What a build does with a base next: read its accounts and list its paths."""
    from builder.layers.read import find_files, list_paths

    find_files(store, base.layers, lambda path: path in ("etc/passwd", "etc/group"))
    list_paths(store, base.layers, lambda path: path.startswith("usr/"))


@FUZZ
@given(entries=st.lists(st.tuples(st.text(min_size=1, max_size=20),
                                  st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                                   tarfile.CHRTYPE, tarfile.FIFOTYPE]),
                                  st.text(max_size=20)), min_size=1, max_size=8))
@example(entries=[("0", tarfile.SYMTYPE, "")])         # found: an empty link target
@example(entries=[("0", tarfile.SYMTYPE, "\u00e9\x00b")])  # found: a NUL in a (PAX) link target
def test_base_layer_entries(scratch, entries):
    """Layers of odd names and links (whiteouts, `..`, links to anything): unpacked or refused, never outside."""
    from builder.layers.unpack import unpacked

    directory = fresh(scratch)
    (directory / "outside").mkdir()
    built = []
    for name, kind, link in entries:
        fields = {"type": kind}
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            fields["linkname"] = link.replace("OUT", str(directory / "outside"))
        built.append(hi.entry(name.replace("\x00", ""), b"data" if kind == tarfile.REGTYPE else b"", **fields))
    try:
        layer = hi.layer(built)
    except (ValueError, UnicodeError):
        return  # tarfile cannot write such a name
    hi.oci_layout(directory / "layout", [layer])
    store = Store(directory / "store")
    try:
        base = from_oci_layout(directory, "layout", store, PLATFORM)
        counted("layer-entries")
        try:
            unpacked(store, base.layers)
            _use_base(store, base)
        except AirbuildError:
            pass
    finally:
        store.close()
    assert list((directory / "outside").iterdir()) == []


# -- through the CLI ----------------------------------------------------------------------------------

CLI_CASES = {
    "astro.yaml": [b"base: {rootfs: x, oci: y}\n", b"\xff\xfe bad utf-8\n", b"[" * 3000, b"a: &x [*x]\n",
                   b"platform: 7\n", b"name: x\n\x00\n"],
    "Dockerfile": [b"RUN x\n", b"FROM\n", b"FROM a\nFROM b\n", b"\xff\n", b"FROM a\nCOPY --from=x a b\n"],
    "requirements.txt": [b"\xff\xfe\n", b"-r missing.txt\nrequests===\n"],
    "packages.txt": [b"pkg:amd64\n", b"\xff\n", b"a=1\na=2\n"],
    ".dockerignore": [b"\xff[\n!**\n"],
}


@pytest.mark.parametrize("name,content", [(name, content) for name, contents in CLI_CASES.items()
                                          for content in contents])
def test_cli_exit_codes_on_bad_input(tmp_path, airbuild_cache, name, content):
    """`airbuild build` on a project with one bad file: exit 2 (or a build), one clear line, no traceback."""
    project = make_project(tmp_path / "app")
    if name != "astro.yaml":
        hi_rootfs = tmp_path / "rootfs.tar.gz"
        with tarfile.open(fileobj=(buffer := io.BytesIO()), mode="w") as archive:
            info = tarfile.TarInfo("etc/passwd")
            data = b"root:x:0:0::/root:/bin/sh\nastro:x:50000:0::/a:/bin/sh\n"
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        hi_rootfs.write_bytes(gzip.compress(buffer.getvalue()))
        (project / "astro.yaml").write_text("base:\n  rootfs: ../rootfs.tar.gz\n")
    (project / name).write_bytes(content)
    proc = run_cli(["build", project, "--json", "--no-validate"], check=False)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    if proc.returncode == 2:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("airbuild: error:")]
        assert len(errors) == 1 and json.loads(proc.stdout)["exit_code"] == 2


# -- the pattern matcher against a regex reading of the same patterns --------------------------------

def _regex_reading(text: str, or_below: bool):
    """Docker's patterns as a backtracking regex (what airbuild used before; exponential on `*a*a*a*b`)."""
    import re

    out, i = [], 0
    while i < len(text):
        if text.startswith("**", i):
            i += 2
            if i < len(text) and text[i] == "/":
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(text[i], re.escape(text[i])))
        i += 1
    return re.compile("^" + "".join(out) + ("(?:/.*)?$" if or_below else "$"), re.DOTALL)


@FUZZ
@given(pattern=st.text(st.sampled_from("ab/*?."), max_size=8), path=st.text(st.sampled_from("ab/."), max_size=8),
       or_below=st.booleans())
def test_patterns_match_as_the_regex_reading_does(pattern, path, or_below):
    from builder.project.pattern import compile_pattern

    counted("pattern-matcher")
    assert compile_pattern(pattern, or_below=or_below).match(path) == bool(
        _regex_reading(pattern, or_below).match(path)), (pattern, path)


def test_patterns_match_in_linear_time():
    """`*a*a...*b` against a long name: a backtracking regex takes exponential time; this answers at once."""
    from builder.project.pattern import compile_pattern

    assert not compile_pattern("*a" * 30 + "b").match("a" * 200)
    assert compile_pattern("**/x/**/" + "*a" * 20, or_below=True).match("d/x/e/" + "a" * 40 + "/f")
