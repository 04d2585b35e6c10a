"""pip's install order reads every Requires-Dist of the resolved set: the common shapes are read with a pattern,
the rest with packaging's parser, and both must lead to the same graph nodes."""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder.actions.python.install_order import _evaluate, _targets

ENVIRONMENT = {"implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
               "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
               "platform_system": "Linux", "platform_version": "", "python_full_version": "3.11.2",
               "python_version": "3.11", "sys_platform": "linux"}

# Shapes taken from Airflow's dependency metadata, and the odd ones the pattern must leave to packaging.
REQUIRES = [
    "requests", "requests>=2.27.0", "requests (>=2.27.0,<3)", "Flask-AppBuilder==4.5.2", "pendulum<4.0,>=2.1.2",
    'psycopg2-binary>=2.9.4; extra == "postgres"', "apache-airflow-providers-http ; extra == 'HTTP'",
    'uvicorn[standard]>=0.12.0; extra == "server"', 'sqlalchemy[asyncio] ; extra == "async"',
    "opentelemetry-exporter-otlp[grpc,  HTTP]", "foo[]", "Foo_Bar.baz[Extra_One]~=1.4",
    'importlib-metadata>=6.5; python_version < "3.12"', 'colorama; sys_platform == "win32"',
    '(pywin32>=300) ; (platform_system == "Windows") and extra == "windows"',
    'twine; extra == "dev" or extra == "docs"', 'x ; extra == ""', "pkg @ https://example.invalid/pkg-1.0.whl",
    'pkg[a] @ https://example.invalid/pkg-1.0.whl ; extra == "a"', "a[b", "not a requirement !", "===1",
]


def packaging_targets(text: str, extras: frozenset[str]) -> list[str]:
    """What the graph's nodes were before the pattern: packaging's parser for every requirement."""
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement:
        return []
    if requirement.marker is not None and not _evaluate(requirement.marker, extras, ENVIRONMENT):
        return []
    name = canonicalize_name(requirement.name)
    if not requirement.extras:
        return [name]
    with_extras = f"{name}[{','.join(sorted(canonicalize_name(e) for e in requirement.extras))}]"
    return [name, with_extras] if requirement.specifier or requirement.url else [with_extras]


def test_requirements_lead_to_the_nodes_packaging_reads_for_every_set_of_extras():
    for extras in (frozenset(), frozenset({"postgres"}), frozenset({"http"}), frozenset({"server", "async"}),
                   frozenset({"windows"}), frozenset({"docs"}), frozenset({"a"})):
        for text in REQUIRES:
            assert _targets(text, extras, ENVIRONMENT) == packaging_targets(text, extras), (text, extras)
