"""`.dockerignore` matching follows Docker's rules (moby/patternmatcher), not gitignore's."""

from __future__ import annotations

import pytest

from builder.project.ignore import IgnoreRules


@pytest.mark.parametrize("patterns, path, ignored", [
    (["*.pyc"], "a.pyc", True),
    (["*.pyc"], "dags/a.pyc", False),            # unlike gitignore, * does not reach into directories
    (["**/*.pyc"], "dags/deep/a.pyc", True),
    (["**/*.pyc"], "a.pyc", True),               # ** matches zero directories too
    (["docs"], "docs/guide/index.md", True),     # a matched directory takes its contents with it
    (["/docs/"], "docs/a.md", True),             # leading and trailing slashes are cleaned away
    (["./logs"], "logs/x.log", True),
    (["dags/*/tmp"], "dags/team/tmp/x", True),
    (["dags/*/tmp"], "dags/team/deep/tmp", False),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["!README.md", "*.md"], "README.md", True), # the last matching pattern wins
    (["docs", "!docs/keep.md"], "docs/keep.md", False),
    (["file?.txt"], "file1.txt", True),
    (["file?.txt"], "file10.txt", False),
    (["[a-c].txt"], "b.txt", True),
    (["[!a-c].txt"], "b.txt", False),
    (["# a comment", ""], "# a comment", False),
    (["\\#literal"], "#literal", True),
])
def test_docker_semantics(patterns, path, ignored):
    assert IgnoreRules(patterns).ignored(path) is ignored


def test_astro_defaults_and_our_outputs(tmp_path):
    (tmp_path / ".dockerignore").write_text("!.env\n")
    rules = IgnoreRules.for_project(tmp_path)
    for path in (".git/config", "airflow_settings.yaml", "logs/a.log", ".venv/bin/python", "airflow.db",
                 "airflow.cfg", ".airbuild/state.json", "astro.lock"):
        assert rules.ignored(path), path
    assert not rules.ignored(".env"), "a user's exception overrides Astro's defaults"
    (tmp_path / ".dockerignore").write_text("!.airbuild\n!astro.lock\n")
    rules = IgnoreRules.for_project(tmp_path)
    assert rules.ignored(".airbuild/image/index.json") and rules.ignored("astro.lock"), "never in a layer"


def test_walk_enters_an_ignored_directory_only_for_an_exception():
    rules = IgnoreRules(["docs", "!docs/keep.md", "build"])
    assert rules.may_reinclude_below("docs")
    assert not rules.may_reinclude_below("build")
