"""The DAG harness's own logic, imported directly (it runs in the image's Python; here in ours)."""

from __future__ import annotations

import os

import pytest

from builder.validate import harness


def test_the_summary_is_the_final_exception_whole_and_found_without_copying_a_huge_message():
    sqlalchemy = ('Traceback (most recent call last):\n  File "/x/dags/a.py", line 3, in <module>\n    run()\n'
                  '    ^^^^^\nsqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table: t\n'
                  '[SQL: select 1]\n(Background on this error at: https://sqlalche.me/e/14/e3q8)\n')
    assert harness.summary(sqlalchemy) == ("sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such "
                                           "table: t\n[SQL: select 1]\n(Background on this error at: "
                                           "https://sqlalche.me/e/14/e3q8)")
    syntax = '  File "/x/dags/b.py", line 2\n    def f(:\n          ^\nSyntaxError: invalid syntax\n'
    assert harness.summary(syntax) == "SyntaxError: invalid syntax"
    assert harness.summary("a plain message") == "a plain message"
    huge = 'Traceback (most recent call last):\n  File "/x/c.py", line 1, in <module>\nValueError: ' + "m" * (8 << 20)
    summary = harness.summary(huge)
    assert summary.startswith("ValueError: mmm") and len(summary) < harness.CAPTURED_BYTES + 100
    assert summary.endswith(f"[... {(8 << 20) + len('ValueError: ') - harness.CAPTURED_BYTES} more characters not kept]")
    kept = harness.head_and_tail(huge)
    assert kept.startswith("Traceback") and kept.endswith("mmm") and len(kept) < harness.CAPTURED_BYTES + 100


def test_captured_keeps_the_first_bytes_and_counts_them_all():
    read_end, write_end = os.pipe()
    captured = harness.Captured(10)
    os.write(write_end, b"0123456789abcdef")
    os.close(write_end)
    while captured.open:
        captured.read(read_end)
    os.close(read_end)
    assert captured.size == 16 and captured.data() == b"0123456789"
    assert captured.text() == "0123456789\n[... 6 more bytes not kept]"


def test_errors_are_classified_by_what_airflow_says():
    assert harness.classify("airflow.exceptions.AirflowDagCycleException: Cycle detected in DAG") == "cycle"
    assert harness.classify("DuplicateTaskIdFound: Task id 'a' has already been added") == "duplicate_task"
    assert harness.classify("AirflowTaskTimeout: DagBag import timeout") == "timeout"
    assert harness.classify("ModuleNotFoundError: No module named 'x'") == "import"


def test_the_modules_a_dag_file_imports_are_read_from_its_import_lines():
    source = (b"import json, xml.dom as d\nfrom email.mime import text\nfrom . import sibling\n"
              b"def f():\n    import csv  # a comment, os\n    from .pkg import x\n"
              b"from  collections.abc  import (\n    Mapping,\n)\nimport re; import sys\nx = 'not.an import'\n")
    assert harness.imported_names(source) == {"json", "xml.dom", "email.mime", "csv", "collections.abc", "re"}


def test_a_module_the_project_provides_is_never_preimported(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "dags" / "helpers").mkdir(parents=True)
    (project / "dags" / "local_mod.py").write_text("raise SystemExit('imported by the harness')\n")
    (project / "dags" / "helpers" / "deep.py").write_text("raise SystemExit('imported by the harness')\n")
    monkeypatch.syspath_prepend(str(project / "dags"))
    roots = (str(project) + os.sep,)
    assert harness.provided_by_image("json.decoder", roots)
    assert not harness.provided_by_image("local_mod", roots)
    assert not harness.provided_by_image("helpers.deep", roots), "a namespace package of the project"
    assert not harness.provided_by_image("not_installed_anywhere.sub", roots)


def test_what_a_child_says_it_imported_is_learned_only_for_packages_already_held(monkeypatch):
    import sys

    assert harness.learnable(["json.tool", "os.path", "this", "antigravity", "json.__main__", "json..x",
                              "unheld_package.sub", 7, "json.scanner; rm -rf /"]) == \
        {"json.tool"} - set(sys.modules)
    assert harness.learnable("json.tool") == set()
    assert harness.learnable(None) == set()


def test_the_dag_folder_is_listed_again_when_its_layout_changes_not_when_a_file_is_edited(tmp_path):
    folder = tmp_path / "dags"
    (folder / "team").mkdir(parents=True)
    (folder / "team" / "a.py").write_text("# airflow dag\n")
    first = harness.folder_layout(str(folder))
    with open(folder / "team" / "a.py", "a") as edit:  # an editor writing in place
        edit.write("# more\n")
    assert harness.folder_layout(str(folder)) == first, "an edit inside a file keeps the listing"
    (folder / "team" / "b.py").write_text("# airflow dag\n")
    second = harness.folder_layout(str(folder))
    assert second != first, "a new file lists again"
    (folder / ".airflowignore").write_text("b.py\n")
    third = harness.folder_layout(str(folder))
    assert third != second
    os.utime(folder / ".airflowignore", ns=(1, 1))  # an ignore file rewritten in place
    assert harness.folder_layout(str(folder)) != third, "a changed .airflowignore lists again"


def test_a_listing_taken_just_after_a_change_is_not_reused(tmp_path, monkeypatch):
    """A directory's time moves by clock ticks: a file added in the same tick as the listing must not be missed."""
    import sys
    import types

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.py").write_text("# airflow dag\n")
    calls = []

    def list_py_file_paths(directory, safe_mode):
        calls.append(safe_mode)
        return sorted(str(p) for p in folder.glob("*.py"))

    fake = types.SimpleNamespace(find_dag_file_paths=None, list_py_file_paths=list_py_file_paths,
                                 might_contain_dag=lambda path, safe_mode: True)
    utils = types.SimpleNamespace(file=fake)  # the image's Airflow, as far as list_files asks it
    monkeypatch.setitem(sys.modules, "airflow", types.SimpleNamespace(utils=utils))
    monkeypatch.setitem(sys.modules, "airflow.utils", utils)
    monkeypatch.setitem(sys.modules, "airflow.utils.file", fake)
    monkeypatch.setattr(harness, "REQUEST", {"safe_mode": True})
    monkeypatch.setattr(harness, "LISTED", {})
    assert harness.list_files(str(folder)) == [str(folder / "a.py")]
    assert harness.list_files(str(folder)) == [str(folder / "a.py")]
    assert len(calls) == 2, "the folder changed within the last second: listed again"
    old = 1_000_000_000
    os.utime(folder, ns=(old, old))
    harness.list_files(str(folder))
    harness.list_files(str(folder))
    assert len(calls) == 3, "a settled folder is listed once"
    assert calls == [False, False, False], "the safe-mode check is the harness's own, per file"


def test_the_warm_up_guard_refuses_a_module_the_project_provides(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "include" / "shadowing").mkdir(parents=True)
    (project / "include" / "shadowing" / "__init__.py").write_text("raise SystemExit('imported by the harness')\n")
    monkeypatch.syspath_prepend(str(project / "include"))
    guard = harness.ProjectGuard((str(project) + os.sep,))
    with pytest.raises(ImportError):
        guard.find_spec("shadowing")
    assert guard.find_spec("json").origin.endswith("json/__init__.py")
    assert guard.find_spec("not_installed_anywhere") is None
