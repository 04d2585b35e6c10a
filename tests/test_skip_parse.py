"""Astro's skip-parse settings (ASTRONOMER_SKIP_PARSE, skip_parse in .astro/config.yaml) and --no-validate,
honoured by build and deploy, against a real Airflow whose parse would refuse the project."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.test_deploy import make_deploy_project
from tests.test_validate import AIRFLOW_3, TEST_STORE, project_with


@pytest.fixture
def cyclic_project(tmp_path, debian_rootfs, monkeypatch):
    """An Airflow 3 project whose cycle.py fails validation; no home Astro config gets in the way."""
    monkeypatch.setenv("ASTRO_HOME", str(tmp_path / "astro-home"))
    monkeypatch.delenv("ASTRONOMER_SKIP_PARSE", raising=False)
    project = project_with(tmp_path, AIRFLOW_3, ["good.py", "cycle.py"])
    return project, f"rootfs:{debian_rootfs}"


def build(project: Path, base: str, *extra: str, env: dict | None = None):
    return run_cli(["build", project, "--base", base, *extra], env={"AIRBUILD_CACHE_DIR": str(TEST_STORE),
                                                                       **(env or {})}, check=False)


def test_the_environment_variable_skips_the_parse_as_astro_reads_it(cyclic_project):
    project, base = cyclic_project
    refused = build(project, base)
    assert refused.returncode == 1 and "dags/cycle.py" in refused.stderr

    for value in ("true", "1", "Yes", "on"):
        skipped = build(project, base, "--json", env={"ASTRONOMER_SKIP_PARSE": value})
        assert skipped.returncode == 0, skipped.stderr
        result = json.loads(skipped.stdout)
        assert result["validation"] is None
        assert result["validation_skipped"] == f"ASTRONOMER_SKIP_PARSE={value} in the environment (Astro's skip-parse setting)"
    table = build(project, base, env={"ASTRONOMER_SKIP_PARSE": "true"})
    assert "DAGs      not validated: parse skipped (ASTRONOMER_SKIP_PARSE=true in the environment" in table.stdout
    assert build(project, base, env={"ASTRONOMER_SKIP_PARSE": "false"}).returncode == 1
    flag = json.loads(build(project, base, "--no-validate", "--json").stdout)
    assert flag["validation"] is None and flag["validation_skipped"] == "--no-validate"


def test_skip_parse_in_the_project_config_wins_over_the_home_one(cyclic_project, tmp_path):
    project, base = cyclic_project
    config = project / ".astro" / "config.yaml"
    config.parent.mkdir()
    config.write_text("project:\n  name: p\nskip_parse: true\n")
    result = json.loads(build(project, base, "--json").stdout)
    assert result["validation"] is None and result["validation_skipped"] == \
        f"skip_parse: true in {config} (Astro's skip-parse setting)"

    home = tmp_path / "astro-home" / ".astro" / "config.yaml"
    home.parent.mkdir(parents=True)
    home.write_text("skip_parse: True\n")
    config.write_text("project:\n  name: p\nskip_parse: false\n")
    assert build(project, base).returncode == 1, "the project's false decides over the home file's true"
    config.write_text("project:\n  name: p\n")
    assert json.loads(build(project, base, "--json").stdout)["validation_skipped"].startswith(
        f"skip_parse: True in {home}")

    config.write_text("project:\n  name: p\nskip_parse: yes\n")
    bad = build(project, base)
    assert bad.returncode == 2 and f"{config}:3: skip_parse: 'yes' is not true or false" in bad.stderr


def test_deploy_says_the_parse_was_skipped(tmp_path, airbuild_cache, registry, monkeypatch):
    monkeypatch.setenv("ASTRO_HOME", str(tmp_path / "astro-home"))
    project = make_deploy_project(tmp_path, "")
    target = f"{registry}/skip-parse-test/{uuid.uuid4().hex[:12]}"
    checked = json.loads(run_cli(["deploy", project, "--to", target, "--json"]).stdout)
    assert checked["validation_skipped"] is None
    flagged = json.loads(run_cli(["deploy", project, "--to", target, "--no-validate", "--json"]).stdout)
    assert flagged["validation_skipped"] == "--no-validate"
    table = run_cli(["deploy", project, "--to", target], env={"ASTRONOMER_SKIP_PARSE": "y"})
    assert "DAGs not validated: parse skipped (ASTRONOMER_SKIP_PARSE=y in the environment" in table.stdout
    assert table.stdout.strip().splitlines()[-1] == f"{target}@{checked['manifest_digest']}"
