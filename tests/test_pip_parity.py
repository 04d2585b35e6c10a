"""The python-requirements layer holds what pip leaves: the same files with the same contents, the same RECORDs.

pip (a pinned release, run from its wheel) installs the same pinned wheels, downloaded on the host
and mounted into a container of the same Debian base (`--no-index --find-links`, no network), so
pip resolves them itself and installs in its own order: where wheels share a file, the one pip
installs last wins, which is what airbuild's order must reproduce. Compared: every path under
site-packages, the sha256 of every file, and each RECORD as a set of rows. Left out, with why:
bytecode (`--no-compile`; airbuild writes none), INSTALLER (`pip` against `airbuild`, and its RECORD
row), console scripts in bin/ (their RECORD rows: pip's and installer's script templates differ;
their names are compared), the order of RECORD rows (pip sorts them, installer writes them as it
installs; RECORD has no order).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.helpers import rule_layers, run, run_cli
from tests.projects import make_project
from tests.test_validate import TEST_STORE

PIP = "26.0.1"
SITE = "usr/local/lib/python3.11/dist-packages"
SETS = {
    # Each gcloud-aio-* wheel ships gcloud/py.typed and gcloud/aio/py.typed (pypa's installer refused the
    # second); PyJWT (under gcloud-aio-auth) and jwt both ship jwt/__init__.py and more, with different
    # contents: pip's order decides which one the image imports.
    "gcloud-aio-and-jwt": "gcloud-aio-storage==9.6.5\ngcloud-aio-pubsub==7.0.0\ngcloud-aio-bigquery==7.2.0\njwt==1.4.0\n",
    # The real case: Google's provider on Airflow (about 260 wheels), whose gcloud-aio-* and opencensus
    # wheels share files.
    "airflow-google-provider": "apache-airflow==3.3.2\napache-airflow-providers-google==22.8.0\n",
}


@pytest.fixture(scope="module")
def pip_wheel(tmp_path_factory) -> Path:
    cache = Path(os.environ.get("AIRBUILD_FIXTURE_CACHE", Path.home() / ".cache" / "airbuild" / "fixtures")) / "pip"
    wheel = cache / f"pip-{PIP}-py3-none-any.whl"
    if not wheel.is_file():
        run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--dest", cache, f"pip=={PIP}"])
    return wheel


@pytest.fixture(scope="module")
def base_image(debian_rootfs, docker_client):
    image = f"airbuild-test/pip-parity:{uuid.uuid4().hex[:12]}"
    docker_client("import", debian_rootfs, image)
    yield image
    docker_client("rmi", image)


def pip_install(image: str, pip_wheel: Path, wheels: Path, requirements: Path, out: Path) -> None:
    (out / "site").mkdir(parents=True)
    (out / "bin").mkdir()
    run(["docker", "run", "--rm", "--network", "none",
         "-v", f"{pip_wheel.parent}:/pip:ro", "-v", f"{wheels}:/wheels:ro", "-v", f"{requirements}:/requirements.txt:ro",
         "-v", f"{out / 'site'}:/{SITE}", "-v", f"{out / 'bin'}:/usr/local/bin", image,
         "python3", f"/pip/{pip_wheel.name}/pip", "install", "--no-index", "--find-links", "/wheels", "--no-compile",
         "--only-binary", ":all:", "--no-cache-dir", "--break-system-packages", "--root-user-action", "ignore",
         "--disable-pip-version-check", "--quiet", "-r", "/requirements.txt"])


def wheel_dir(project: Path, store: Path, dest: Path) -> Path:
    """The locked wheels, under their file names, taken from the store airbuild downloaded them into."""
    dest.mkdir()
    for entry in json.loads((project / "astro.lock").read_text())["python"]["entries"]:
        source = store / "blobs" / "sha256" / entry["sha256"]
        try:
            os.link(source, dest / entry["filename"])
        except OSError:
            shutil.copyfile(source, dest / entry["filename"])
    return dest


def skipped(path: str) -> bool:
    return "__pycache__/" in path or path.endswith((".pyc", ".dist-info/INSTALLER"))


def comparable(files: dict[str, bytes]) -> dict[str, object]:
    out: dict[str, object] = {}
    for path, data in files.items():
        if skipped(path):
            continue
        if path.endswith(".dist-info/RECORD"):
            out[path] = sorted(tuple(row) for row in csv.reader(io.StringIO(data.decode()))
                               if row and not skipped(row[0]) and not row[0].startswith("../../../bin/"))
        else:
            out[path] = hashlib.sha256(data).hexdigest()
    return out


def layer_files(result: dict, prefix: str) -> dict[str, bytes]:
    """The files under `prefix` in the Python layers; a file in two of them would be an error (each shared file is
    kept only in its winner's layer, so the layers' order does not decide it)."""
    files = {}
    for layer in rule_layers(result, "python-requirements"):
        with tarfile.open(Path(result["oci_layout"]) / "blobs" / layer["digest"].replace(":", "/")) as archive:
            for member in archive:
                if member.isfile() and member.name.startswith(prefix + "/"):
                    name = member.name[len(prefix) + 1:]
                    assert name not in files, f"{name} is in two Python layers"
                    files[name] = archive.extractfile(member).read()
    return files


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("name", SETS)
def test_the_python_layer_is_what_pip_installs(name, tmp_path, debian_rootfs, base_image, pip_wheel):
    project = make_project(tmp_path / "p")
    (project / "requirements.txt").write_text(SETS[name])
    result = json.loads(run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json"],
                                env={"AIRBUILD_CACHE_DIR": str(TEST_STORE)}).stdout)
    wheels = wheel_dir(project, TEST_STORE, tmp_path / "wheels")
    pip_install(base_image, pip_wheel, wheels, project / "requirements.txt", tmp_path / "pip")

    ours, pips = comparable(layer_files(result, SITE)), comparable(tree_files(tmp_path / "pip" / "site"))
    assert sorted(set(ours) - set(pips)) == [] and sorted(set(pips) - set(ours)) == []
    differ = sorted(path for path in ours if ours[path] != pips[path])
    assert differ == [], {path: (ours[path], pips[path]) for path in differ[:5]}
    assert {p.rsplit("/", 1)[-1] for p in layer_files(result, "usr/local/bin")} == \
        set(tree_files(tmp_path / "pip" / "bin"))
    requested = {p.split("-", 1)[0].lower() for p in ours if p.endswith(".dist-info/REQUESTED") and p.count("/") == 1}
    assert requested == {line.split("==")[0].replace("-", "_") for line in SETS[name].splitlines()}
    if name == "gcloud-aio-and-jwt":
        # Shared files are there once; jwt/__init__.py is jwt's (pip installs it after PyJWT), and both RECORDs
        # still list it, each with its own wheel's hash, as pip leaves them.
        assert "gcloud/aio/py.typed" in ours and "gcloud/py.typed" in ours
        claims = {path.split("-", 1)[0]: row[1] for path, rows in ours.items() if path.endswith("/RECORD")
                  for row in rows if row[0] == "jwt/__init__.py"}
        content = "sha256=" + base64.urlsafe_b64encode(
            hashlib.sha256(layer_files(result, SITE)["jwt/__init__.py"]).digest()).rstrip(b"=").decode()
        assert set(claims) == {"jwt", "pyjwt"} and claims["jwt"] == content != claims["pyjwt"]
