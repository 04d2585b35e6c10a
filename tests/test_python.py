"""requirements.txt as a locked layer for the image's own Python: real wheels, real runs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.helpers import rule_layers, run, run_cli, tool
from tests.projects import make_project
from tests.test_bases import tiny_rootfs
from tests.package_index import PackageIndex

REQUIREMENTS = "# compiled extensions, and a console script\npyyaml==6.0.2\nmarkupsafe==3.0.2\ntabulate==0.9.0\n"
DEAD_PROXY = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


def build(project: Path, base: str, *extra: str, env: dict | None = None, check: bool = True):
    proc = run_cli(["build", project, "--base", base, "--json", *extra], env=env, check=check)
    return json.loads(proc.stdout) if check else proc


def layer_names(result: dict, rule: str) -> list[str]:
    import tarfile

    names = []
    for layer in rule_layers(result, rule):
        with tarfile.open(Path(result["oci_layout"]) / "blobs" / layer["digest"].replace(":", "/")) as archive:
            names += archive.getnames()
    return names


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "p")
    (project / "requirements.txt").write_text(REQUIREMENTS)
    return project


def test_installed_layer_imports_and_runs_in_docker_and_bwrap(project, debian_rootfs, airbuild_cache,
                                                              docker_client, tmp_path):
    archive = tmp_path / "image.tar"
    result = build(project, f"rootfs:{debian_rootfs}", "--archive", archive)
    names = layer_names(result, "python-requirements")
    site = "usr/local/lib/python3.11/dist-packages"
    assert f"{site}/yaml/__init__.py" in names and "usr/local/bin/tabulate" in names
    assert not [n for n in names if n.endswith(".pyc")], "no bytecode: it would carry timestamps"
    lock = json.loads((project / "astro.lock").read_text())
    assert {e["name"].lower(): e["version"] for e in lock["python"]["entries"]} == \
        {"pyyaml": "6.0.2", "markupsafe": "3.0.2", "tabulate": "0.9.0"}

    check = ("import yaml, markupsafe._speedups, tabulate; assert yaml.__with_libyaml__; "
             "print(tabulate.__version__)")
    ref = f"p:{result['tag']}"
    docker_client("load", "-i", archive)
    try:
        out = docker_client("run", "--rm", "--network", "none", ref, "sh", "-c",
                            f"python3 -c '{check}' && tabulate --help | head -1 && head -1 /usr/local/bin/tabulate "
                            f"&& cat {'/' + site}/tabulate-0.9.0.dist-info/INSTALLER").stdout.split("\n")
        assert out[0] == "0.9.0"
        assert out[1].startswith("Usage: tabulate")
        assert out[2] == "#!/usr/bin/python3.11", "console scripts run the image's interpreter"
        assert out[3] == "airbuild"
    finally:
        docker_client("rmi", "-f", ref, check=False)

    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{result['oci_layout']}:{result['tag']}", bundle])
    sandboxed = run([tool("bwrap"), "--ro-bind", bundle / "rootfs", "/", "--proc", "/proc", "--dev", "/dev",
                     "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "/usr/bin/python3", "-c", check])
    assert sandboxed.stdout.strip() == "0.9.0"


def test_clean_caches_give_the_same_layer_and_an_unchanged_lock_stays_offline(tmp_path, debian_rootfs):
    results = []
    for name in ("one", "two"):
        project = make_project(tmp_path / name / "p")
        (project / "requirements.txt").write_text(REQUIREMENTS)
        results.append(build(project, f"rootfs:{debian_rootfs}", env={"AIRBUILD_CACHE_DIR": str(tmp_path / name)}))
    layers = [[(l["diff_id"], l["digest"]) for l in rule_layers(r, "python-requirements")] for r in results]
    assert layers[0] and layers[0] == layers[1]

    project = tmp_path / "one" / "p"
    (project / "dags" / "etl.py").write_text("# a DAG edit\n")
    env = {"AIRBUILD_CACHE_DIR": str(tmp_path / "one"), **DEAD_PROXY}
    offline = build(project, f"rootfs:{debian_rootfs}", "--locked", env=env)
    assert all(l["cached"] for l in rule_layers(offline, "python-requirements"))

    (project / "requirements.txt").write_text(REQUIREMENTS + "six==1.16.0\n")
    moved = build(project, f"rootfs:{debian_rootfs}", "--locked", env=env, check=False)
    assert moved.returncode == 2
    assert "requirements.txt no longer matches" in moved.stderr and "airbuild lock" in moved.stderr


def test_base_packages_are_kept_and_conflicts_name_both_versions(tmp_path, debian_rootfs, airbuild_cache):
    runtime = make_project(tmp_path / "runtime")
    (runtime / "requirements.txt").write_text("six==1.16.0\n")
    base = build(runtime, f"rootfs:{debian_rootfs}", "--oci", tmp_path / "runtime-layout")
    base_ref = f"oci:{tmp_path / 'runtime-layout'}:{base['tag']}"

    app = make_project(tmp_path / "app")
    (app / "requirements.txt").write_text("six\npyyaml==6.0.2\n")
    result = build(app, base_ref)
    names = layer_names(result, "python-requirements")
    assert any(n.startswith("usr/local/lib/python3.11/dist-packages/yaml/") for n in names)
    assert not any("six" in n for n in names), "the base's six is not installed twice"
    pinned = {e["name"].lower() for e in json.loads((app / "astro.lock").read_text())["python"]["entries"]}
    assert pinned == {"pyyaml"}

    (app / "requirements.txt").write_text("pyyaml==6.0.2\nsix==1.15.0\n")
    conflict = build(app, base_ref, check=False)
    assert conflict.returncode == 2
    assert "requirements.txt:2" in conflict.stderr
    assert "six==1.15.0" in conflict.stderr and "six 1.16.0" in conflict.stderr


def test_a_base_without_python_is_a_clear_error(tmp_path, airbuild_cache):
    tiny_rootfs(tmp_path / "rootfs.tar.gz")
    project = make_project(tmp_path / "p")
    (project / "requirements.txt").write_text("six\n")
    proc = build(project, f"rootfs:{tmp_path / 'rootfs.tar.gz'}", check=False)
    assert proc.returncode == 2 and "has no Python 3 interpreter" in proc.stderr


def test_lock_upgrade_package_moves_only_that_package(project, debian_rootfs, airbuild_cache):
    (project / "requirements.txt").write_text("tabulate<0.9\nsix<1.16\n")
    build(project, f"rootfs:{debian_rootfs}")
    before = {e["name"]: e["version"] for e in json.loads((project / "astro.lock").read_text())["python"]["entries"]}
    assert before["tabulate"].startswith("0.8") and before["six"].startswith("1.15")
    (project / "requirements.txt").write_text("tabulate\nsix\n")
    run_cli(["lock", project, "--base", f"rootfs:{debian_rootfs}", "--upgrade-package", "tabulate"])
    after = {e["name"]: e["version"] for e in json.loads((project / "astro.lock").read_text())["python"]["entries"]}
    assert after["six"] == before["six"], "a loosened requirement keeps its earlier pin"
    assert after["tabulate"] != before["tabulate"]
    run_cli(["lock", project, "--base", f"rootfs:{debian_rootfs}", "--upgrade"])
    upgraded = {e["name"]: e["version"] for e in json.loads((project / "astro.lock").read_text())["python"]["entries"]}
    assert upgraded["six"] != before["six"]


# -- a private index on loopback, behind Basic auth ---------------------------------------------

SECRET = "s3cr3t-Pa55word-for-the-index"


def make_wheel(name: str, version: str) -> tuple[str, bytes]:
    filename = f"{name}-{version}-py3-none-any.whl"
    files = {f"{name}/__init__.py": f"VALUE = '{name} {version}'\n".encode(),
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for path, data in files.items()) + f"{name}-{version}.dist-info/RECORD,,\n"
    files[f"{name}-{version}.dist-info/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return filename, buffer.getvalue()


@pytest.fixture
def private_index():
    filename, wheel = make_wheel("internal_tools", "1.2.0")
    expected = "Basic " + base64.b64encode(f"ci:{SECRET}".encode()).decode()
    index = PackageIndex([(filename, wheel)], auth=expected)
    yield index.url
    index.close()


def test_private_index_credentials_never_land_anywhere(tmp_path, debian_rootfs, airbuild_cache, private_index):
    project = make_project(tmp_path / "p")
    (project / "requirements.txt").write_text("internal-tools==1.2.0\n")
    (project / "astro.yaml").write_text(f"index_url: {private_index}\n")
    env = {"AIRBUILD_INDEX_USERNAME": "ci", "AIRBUILD_INDEX_PASSWORD": SECRET}
    proc = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--json"], env=env)
    result = json.loads(proc.stdout)
    assert "usr/local/lib/python3.11/dist-packages/internal_tools/__init__.py" in \
        layer_names(result, "python-requirements")
    haystacks = [proc.stdout.encode(), proc.stderr.encode(), (project / "astro.lock").read_bytes()]
    haystacks += [p.read_bytes() for p in (project / ".airbuild").rglob("*") if p.is_file()]
    haystacks += [p.read_bytes() for p in airbuild_cache.rglob("*") if p.is_file()]
    import gzip

    for blob in (Path(result["oci_layout"]) / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        haystacks.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    assert all(SECRET.encode() not in h for h in haystacks), "the index password leaked"

    (project / "astro.lock").unlink()
    wrong_password = "wrong-" + SECRET
    wrong = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}"], check=False,
                    env={"AIRBUILD_INDEX_USERNAME": "ci", "AIRBUILD_INDEX_PASSWORD": wrong_password})
    assert wrong.returncode == 2 and "cannot resolve" in wrong.stderr
    assert wrong_password not in wrong.stderr + wrong.stdout


def test_two_requirements_rules_each_keep_their_own_lock_section(project, debian_rootfs, shared_store):
    """A second python-requirements rule (requirements-ml.txt) pins in a section of its own name: the
    two never overwrite each other's pins, so a rebuild resolves nothing and changes nothing."""
    (project / "requirements.txt").write_text("tabulate==0.9.0\n")
    (project / "requirements-ml.txt").write_text("toolz==1.0.0\ntabulate\n")
    (project / "astro.yaml").write_text(
        "layers:\n  - system-packages\n  - python-requirements\n"
        "  - {name: python-ml, action: python-requirements, file: requirements-ml.txt}\n"
        "  - dockerfile\n  - project-files\n  - dags\n")
    env = {"AIRBUILD_CACHE_DIR": str(shared_store)}
    first = build(project, f"rootfs:{debian_rootfs}", "--no-validate", env=env)
    lock = json.loads((project / "astro.lock").read_text())
    assert [e["name"].lower() for e in lock["python"]["entries"]] == ["tabulate"]
    assert [e["name"].lower() for e in lock["python-ml"]["entries"]] == ["toolz"], \
        "the rule above sees tabulate installed by the rule below it, as pip in a second RUN would"
    site = "usr/local/lib/python3.11/dist-packages"
    assert f"{site}/tabulate/__init__.py" in layer_names(first, "python-requirements")
    assert f"{site}/toolz/__init__.py" in layer_names(first, "python-ml")
    again = build(project, f"rootfs:{debian_rootfs}", "--no-validate", "--locked", env=env)
    assert not again["lock_changed"] and all(layer["cached"] for layer in again["layers"])
    assert again["manifest_digest"] == first["manifest_digest"]


def test_python_rule_sees_what_a_debian_rule_below_installed(project, debian_rootfs, shared_store):
    """The Python rule reads the filesystem below it, not only the base: Debian's python3-six (from
    packages.txt, one rule lower) satisfies `six`, so only tabulate is resolved and installed."""
    (project / "packages.txt").write_text("python3-six\n")
    (project / "requirements.txt").write_text("six\ntabulate==0.9.0\n")
    env = {"AIRBUILD_CACHE_DIR": str(shared_store)}
    result = build(project, f"rootfs:{debian_rootfs}", "--no-validate", env=env)
    lock = json.loads((project / "astro.lock").read_text())
    assert [e["name"] for e in lock["debian"]["entries"]] == ["python3-six"]
    assert [e["name"].lower() for e in lock["python"]["entries"]] == ["tabulate"]
    names = layer_names(result, "python-requirements")
    assert "usr/local/lib/python3.11/dist-packages/tabulate/__init__.py" in names
    assert not [n for n in names if "/six" in n]
    # Without the Debian package, the same requirements resolve six from the index.
    (project / "packages.txt").write_text("# none\n")
    build(project, f"rootfs:{debian_rootfs}", "--no-validate", env=env)
    lock = json.loads((project / "astro.lock").read_text())
    assert sorted(e["name"].lower() for e in lock["python"]["entries"]) == ["six", "tabulate"]


def test_adding_a_package_rebuilds_one_python_layer_and_the_digest_is_the_locks_alone(tmp_path, debian_rootfs):
    """The requirements are split into layers by a stable hash of each name: adding one package rebuilds only
    its own layer, and the image is the one a fresh store builds from the same requirements directly."""
    base = f"rootfs:{debian_rootfs}"
    project = make_project(tmp_path / "grown" / "p")
    (project / "requirements.txt").write_text(REQUIREMENTS)
    env = {"AIRBUILD_CACHE_DIR": str(tmp_path / "grown" / "store")}
    first = build(project, base, "--no-validate", env=env)
    assert len(rule_layers(first, "python-requirements")) > 1, "several distributions: several layers"
    (project / "requirements.txt").write_text(REQUIREMENTS + "toolz==1.0.0\n")
    grown = build(project, base, "--no-validate", env=env)
    rebuilt = [l["rule"] for l in rule_layers(grown, "python-requirements") if not l["cached"]]
    assert len(rebuilt) == 1, rebuilt
    assert len(rule_layers(grown, "python-requirements")) in (len(rule_layers(first, "python-requirements")),
                                                                len(rule_layers(first, "python-requirements")) + 1)
    site = "usr/local/lib/python3.11/dist-packages"
    assert f"{site}/toolz/__init__.py" in layer_names(grown, "python-requirements")

    # The same requirement lines with a comment added: the same pins, without asking uv or the index.
    (project / "requirements.txt").write_text("# pinned for the ETL DAGs\n" + REQUIREMENTS + "toolz==1.0.0\n")
    commented = build(project, base, "--no-validate",
                      env={**env, **DEAD_PROXY, "UV_CACHE_DIR": str(tmp_path / "empty-uv-cache")})
    assert [l["digest"] for l in rule_layers(commented, "python-requirements")] == \
        [l["digest"] for l in rule_layers(grown, "python-requirements")]

    direct = make_project(tmp_path / "direct" / "p")
    (direct / "requirements.txt").write_text(REQUIREMENTS + "toolz==1.0.0\n")
    fresh = build(direct, base, "--no-validate", env={"AIRBUILD_CACHE_DIR": str(tmp_path / "direct" / "store")})
    assert [l["digest"] for l in rule_layers(fresh, "python-requirements")] == \
        [l["digest"] for l in rule_layers(grown, "python-requirements")]
    assert fresh["manifest_digest"] == grown["manifest_digest"]
