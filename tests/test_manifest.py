"""astro.yaml validation: every error names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.common.errors import InputError
from builder.project.manifest import load_manifest
from tests.helpers import run_cli


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "astro.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, line, fragment", [
    ("name: x\nplatfrom: linux/amd64\n", 2, "platfrom: unknown key"),
    ("name: x\nworkdir: relative/path\n", 2, "workdir: workdir must be an absolute path"),
    ("base:\n  oci: ./a\n  rootfs: b.tar\n", 1, "give exactly one of image, oci, archive, rootfs"),
    ("compression:\n  codec: brotli\n", 2, "compression.codec: Input should be 'gzip' or 'zstd'"),
    ("compression:\n  codec: gzip\n  level: 9\n", 1, "gzip level must be 0-3"),
    ("layers:\n  - dags\n  - name: extra\n    action: files\n    source: include\n", 3,
     "a files rule needs both `source` and `dest`"),
    ("owner:\n  user: astro\n  gruop: 0\n", 3, "owner.gruop: unknown key"),
    ("platform: amd64\n", 1, "expected OS/ARCH"),
])
def test_errors_point_at_file_line_and_field(tmp_path, text, line, fragment):
    with pytest.raises(InputError) as caught:
        load_manifest(write(tmp_path, text))
    error = caught.value
    assert error.path == tmp_path / "astro.yaml"
    assert error.line == line, error.render()
    assert fragment in error.render()


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(InputError) as caught:
        load_manifest(write(tmp_path, "name: x\nlayers: [dags\n"))
    assert caught.value.line == 3 and "invalid YAML" in caught.value.render()


def test_defaults_without_a_manifest(tmp_path):
    manifest, path = load_manifest(tmp_path)
    assert path is None
    assert (manifest.platform, manifest.workdir, manifest.compression.codec) == ("linux/amd64", "/usr/local/airflow",
                                                                                  "gzip")


def test_cli_exit_code_and_message_for_a_bad_manifest(tmp_path):
    write(tmp_path, "name: x\nbogus: 1\n")
    proc = run_cli(["build", tmp_path], check=False)
    assert proc.returncode == 2
    assert f"{tmp_path / 'astro.yaml'}:2: bogus: unknown key" in proc.stderr
    as_json = run_cli(["build", tmp_path, "--json"], check=False)
    assert '"exit_code": 2' in as_json.stdout


def test_unknown_rule_name_lists_the_known_ones(tmp_path):
    write(tmp_path, "layers: [dags, nonesuch]\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    proc = run_cli(["plan", tmp_path], check=False)
    assert proc.returncode == 2
    assert "no rule named 'nonesuch'" in proc.stderr and "project-files" in proc.stderr


def test_unreachable_registry_base_is_a_clear_error(tmp_path):
    from tests.registry_servers import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "Dockerfile").write_text(f"FROM {address}/astronomer/astro-runtime:12.1.0\n")
    proc = run_cli(["build", tmp_path], check=False, env={"AIRBUILD_REGISTRY_RETRIES": "2"})
    assert proc.returncode == 1
    assert address in proc.stderr and "gave up after 2 attempts" in proc.stderr
