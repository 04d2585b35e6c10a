"""A JUnit XML report of DAG validation, for CI systems that show test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from builder.common import masking
from builder.common.atomic import atomic_write_bytes
from builder.validate.run import Report


def write_junit(report: Report, path: Path) -> None:
    suite = ET.Element("testsuite", name="airbuild.dags", tests=str(len(report.files) + len(report.astro_tests) + 1),
                       failures=str(sum(1 for f in report.files if f.failed) + (1 if report.duplicates else 0)
                                    + sum(1 for case in report.astro_tests if case.failed)),
                       time=f"{report.duration_s:.3f}")
    for result in report.files:
        case = ET.SubElement(suite, "testcase", classname="dags", name=result.file, time=f"{result.duration_s:.3f}")
        for error in result.errors:
            tag = "skipped" if result.allowed_to_fail else "failure"
            node = ET.SubElement(case, tag, type=error["kind"], message=error["message"])
            node.text = error.get("traceback", error["message"])
    for astro_case in report.astro_tests:  # .astro/test_dag_integrity_default.py, as astro dev parse runs it
        case = ET.SubElement(suite, "testcase", classname="astro", name=astro_case.name)
        if astro_case.outcome != "passed":
            tag = "skipped" if astro_case.outcome == "skipped" else "failure"
            ET.SubElement(case, tag, type=astro_case.outcome, message=astro_case.message.splitlines()[0]
                          if astro_case.message else astro_case.outcome).text = astro_case.message
    unique = ET.SubElement(suite, "testcase", classname="dags", name="unique dag_ids")
    for duplicate in report.duplicates:
        ET.SubElement(unique, "failure", type="duplicate_dag_id",
                      message=f"dag_id {duplicate['dag_id']} is defined in {', '.join(duplicate['files'])}")
    for node in suite.iter():  # every value a report carries, masked before it is written
        node.attrib = {key: masking.text(value) for key, value in node.attrib.items()}
        if node.text:
            node.text = masking.text(node.text)
    atomic_write_bytes(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True))
