"""Load the rule list: the default set in `rules/`, or the manifest's `layers`."""

from __future__ import annotations

from pathlib import Path

from builder.common.errors import InputError
from builder.common.resources import data_dir
from builder.project.manifest import Manifest, RuleSpec, validate
from builder.project.yaml_source import load_yaml

def rules_dir() -> Path:
    return data_dir("rules")


# A long-lived process (watch) builds on every save: a rule file is parsed again only when it changed.
_loaded: dict[tuple[str, int, int, int], RuleSpec] = {}


def load_rule(name: str) -> RuleSpec:
    path = rules_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in rules_dir().glob("*.yaml") if p.stem != "default")
        raise InputError(f"no rule named {name!r}; known rules: {', '.join(known)}")
    st = path.stat()
    identity = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if identity in _loaded:
        return _loaded[identity]  # frozen: shared safely
    document = load_yaml(path)
    rule = validate(RuleSpec, document, document.data or {})
    if rule.name != name:
        raise InputError(f"rule file names {rule.name!r}; it must match the file name", path=path)
    _loaded[identity] = rule
    return rule


def rule_list(manifest: Manifest, manifest_path: Path | None) -> list[RuleSpec]:
    if manifest.layers is None:
        names = load_yaml(rules_dir() / "default.yaml").data["layers"]
        entries: list[str | RuleSpec] = list(names)
    else:
        entries = manifest.layers
    rules = [load_rule(e) if isinstance(e, str) else e for e in entries]
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise InputError(f"rule {rule.name!r} appears twice in `layers`", path=manifest_path)
        seen.add(rule.name)
    return rules
