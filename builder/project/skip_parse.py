"""Astro's skip-parse settings, honoured by `build` and `deploy` as the Astro CLI's deploy honours them.

The Astro CLI skips its DAG parse when `ASTRONOMER_SKIP_PARSE` is one of true, 1, yes, y, on (any
case), or when `skip_parse` is true in the project's `.astro/config.yaml`, else in the home one
(`$ASTRO_HOME/.astro/config.yaml` or `~/.astro/config.yaml`): a project file that sets the key
decides over the home file. Astro reads the key as Go's strconv.ParseBool does (true, True, TRUE,
t, T, 1 and their false forms; integers: non-zero is true) and silently takes anything else as
false; airbuild refuses such a value (exit 2, naming the file and line) rather than guess.
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.common.errors import InputError

ENV = "ASTRONOMER_SKIP_PARSE"
KEY = "skip_parse"
ENV_TRUE = {"true", "1", "yes", "y", "on"}
PARSE_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
              "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def reason(project: Path, no_validate: bool = False) -> str | None:
    """Why DAG validation is skipped for this build or deploy, or None when it runs."""
    if no_validate:
        return "--no-validate"
    value = os.environ.get(ENV)
    if value is not None and value.lower() in ENV_TRUE:
        return f"{ENV}={value} in the environment (Astro's skip-parse setting)"
    for config in (project / ".astro" / "config.yaml", home_config()):
        setting = _read(config)
        if setting is not None:
            skipped, raw = setting
            return f"{KEY}: {raw} in {config} (Astro's skip-parse setting)" if skipped else None
    return None


def home_config() -> Path:
    home = os.environ.get("ASTRO_HOME")
    return (Path(home) if home else Path.home()) / ".astro" / "config.yaml"


def _read(path: Path) -> tuple[bool, str] | None:
    """(the value, as written) of `skip_parse` in an Astro config file; None when the file or key is absent."""
    if not path.is_file():
        return None
    # The YAML parser (~40 ms): only for a project or user that has an Astro config file; a no-op build
    # asks this on every run.
    import yaml

    from builder.project.yaml_source import load_yaml

    document = load_yaml(path)
    if not isinstance(document.root, yaml.MappingNode):
        return None
    node = next((value for key, value in document.root.value if key.value == KEY), None)
    if node is None:
        return None
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.ScalarNode):
        raise InputError(f"{KEY}: expected true or false", path=path, line=line)
    raw = node.value
    if raw in PARSE_BOOL:
        return PARSE_BOOL[raw], raw
    try:
        return int(raw) != 0, raw
    except ValueError:
        raise InputError(f"{KEY}: {raw!r} is not true or false (the Astro CLI would read it as false)",
                         path=path, line=line) from None
