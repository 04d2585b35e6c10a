"""The order pip installs a resolved set in, computed from the distributions' metadata.

Where two wheels ship the same file, the one installed later wins (pip unlinks the file and
writes the new one; the earlier distribution's RECORD still lists it). So the layer must be
installed in pip's order to hold what `pip install -r requirements.txt` would leave.

pip (`get_installation_order` in pip/_internal/resolution/resolvelib/resolver.py, the same since
pip 22) takes the resolver's dependency graph, whose nodes are the root (None), every
distribution reached, a node `name[extras]` for each set of extras asked for (it depends on
`name`), and `<Python from Requires-Python>` (what every newly installed distribution with a
Requires-Python depends on; distributions already installed do not). It prunes the leaves
again and again, each pass giving its leaves the weight "nodes left - 1", so a distribution
with nothing below it comes first; nodes in a cycle get the longest path from the root instead.
The distributions to install are sorted by (weight, name), heaviest first and, between equals,
names in reverse order. Dependencies come from Requires-Dist, with markers evaluated for the
image's Python (extra "" for a plain requirement, the requested extras for `name[extras]`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from email.parser import HeaderParser

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = None
PYTHON = "<Python from Requires-Python>"
MAX_VISITS = 5  # pip's cap on visits of a node in the cycle walk


@dataclass(frozen=True)
class Distribution:
    name: str                          # canonical (PEP 503)
    requires: tuple[str, ...] = ()     # Requires-Dist values
    requires_python: str = ""
    extras: frozenset[str] = frozenset()  # Provides-Extra, canonical
    installed: bool = False            # in the base already: pip neither installs it nor adds its Python edge

    @classmethod
    def from_metadata(cls, text: str, installed: bool = False, requires_txt: str | None = None) -> "Distribution":
        """From a METADATA or PKG-INFO text; an egg-info's dependencies are in its requires.txt."""
        message = HeaderParser().parsestr(text)
        requires = tuple(r.strip() for r in message.get_all("Requires-Dist") or ())
        extras = frozenset(canonicalize_name(e) for e in message.get_all("Provides-Extra") or ())
        if requires_txt is not None:
            requires, extras = _egg_info_requires(requires_txt)
        return cls(name=canonicalize_name(message.get("Name", "")), requires=requires,
                   requires_python=(message.get("Requires-Python") or "").strip(), extras=extras,
                   installed=installed)


def _egg_info_requires(text: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """requires.txt's `[extra:marker]` sections as Requires-Dist strings, as pip's metadata backend reads them."""
    requires, extras = [], set()
    extra = marker = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line.strip("[]").partition(":")
            extra = canonicalize_name(extra) if extra else ""
            if extra:
                extras.add(extra)
            continue
        condition = (f'({marker}) and extra == "{extra}"' if extra and marker else
                     f'extra == "{extra}"' if extra else marker)
        requires.append(f"{line} ; {condition}" if condition else line)
    return tuple(requires), frozenset(extras)


@dataclass
class Graph:
    children: dict[str | None, set[str]] = field(default_factory=lambda: {ROOT: set()})

    def connect(self, parent: str | None, child: str) -> None:
        self.children.setdefault(parent, set()).add(child)
        self.children.setdefault(child, set())


def install_order(roots: list[str], dists: dict[str, Distribution], environment: dict[str, str]) -> list[str]:
    """The names of the distributions to install (those not `installed`), in pip's order.

    `roots`: requirements.txt's requirement strings; `dists`: every distribution the resolution
    holds, installed ones included, by canonical name; `environment`: marker variables."""
    graph = _graph(roots, dists, environment)
    to_install = {name for name, dist in dists.items() if not dist.installed and name in graph.children}
    weights = topological_weights(graph, to_install)
    return sorted(to_install, key=lambda name: (weights[name], name), reverse=True)


def _graph(roots: list[str], dists: dict[str, Distribution], environment: dict[str, str]) -> Graph:
    graph = Graph()
    pending: list[str] = []

    def connect(parent: str | None, node: str) -> None:
        if node not in graph.children:
            pending.append(node)
        graph.connect(parent, node)

    def require(parent: str | None, text: str, extras: frozenset[str]) -> None:
        for node in _targets(text, extras, environment):
            connect(parent, node)

    for text in roots:
        require(ROOT, text, frozenset())
    while pending:
        node = pending.pop()
        name, extras = _split(node)
        dist = dists.get(name) if node != PYTHON else None
        if dist is None:
            continue  # the Python node, or a name not in the resolution (a marker read differently): a leaf
        if extras:  # pip's ExtrasCandidate: the base distribution, then its requirements with the valid extras
            connect(node, name)
            extras = extras & dist.extras
        elif not dist.installed and dist.requires_python:
            connect(node, PYTHON)
        for text in dist.requires:
            require(node, text, extras)
    return graph


def _targets(text: str, extras: frozenset[str], environment: dict[str, str]) -> list[str]:
    """The graph nodes a requirement leads to, [] when its marker does not apply (for these extras)."""
    parsed = _parse(text)
    if parsed is None:
        return []
    name, wanted, specified, marker = parsed
    if isinstance(marker, str):  # `extra == "x"`: the requested extras (none: "") hold x
        if marker not in (extras or {""}):
            return []
    elif marker is not None and not _evaluate(marker, extras, environment):
        return []
    if not wanted:
        return [name]
    with_extras = f"{name}[{','.join(wanted)}]"
    # pip splits `name[extras]<spec>` into the base requirement (with the specifier) and the extras one.
    return [name, with_extras] if specified else [with_extras]


# Most Requires-Dist values are `name[extras] specifier` with no marker or `extra == "x"`: read those with
# a pattern (packaging's parser took most of the time to order an Airflow-sized set), anything else with
# packaging. Both give the same (name, extras, specified, marker).
_SIMPLE = re.compile(r"""^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([A-Za-z0-9._,\s-]*)\])?\s*"""
                     r"""(\(?\s*(?:(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*\)?)\s*"""
                     r"""(?:;\s*extra\s*==\s*(["'])([A-Za-z0-9._-]*)\4\s*)?$""")


@functools.lru_cache(maxsize=None)
def _parse(text: str) -> tuple[str, tuple[str, ...], bool, "Marker | str | None"] | None:
    """(canonical name, canonical extras sorted, whether it has a specifier or URL, its marker: the canonical
    extra of an `extra == "x"` one, else a Marker or None); None when it is not a requirement."""
    simple = _SIMPLE.match(text.strip())
    if simple is not None and all(e.strip() for e in (simple.group(2) or "x").split(",")):
        extras = tuple(sorted({canonicalize_name(e.strip()) for e in simple.group(2).split(",")})) \
            if simple.group(2) and simple.group(2).strip() else ()
        specified = bool(simple.group(3).strip("() \t"))
        marker = canonicalize_name(simple.group(5)) if simple.group(4) else None
        return canonicalize_name(simple.group(1)), extras, specified, marker
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement:
        return None
    extras = tuple(sorted(canonicalize_name(e) for e in requirement.extras))
    return (canonicalize_name(requirement.name), extras, bool(requirement.specifier or requirement.url),
            requirement.marker)


def _evaluate(marker: Marker, extras: frozenset[str], environment: dict[str, str]) -> bool:
    try:
        contexts = [{**environment, "extra": extra} for extra in sorted(extras)] or [{**environment, "extra": ""}]
        return any(marker.evaluate(context) for context in contexts)
    except (UndefinedComparison, UndefinedEnvironmentName):
        return False


def _split(node: str) -> tuple[str, frozenset[str]]:
    if node.endswith("]") and "[" in node:
        name, _, extras = node[:-1].partition("[")
        return name, frozenset(extras.split(","))
    return node, frozenset()


def topological_weights(graph: Graph, keys: set[str]) -> dict[str, int]:
    """pip's get_topological_weights: prune leaves pass by pass, then walk what cycles left from the root."""
    children = {node: set(kids) for node, kids in graph.children.items()}
    weights: dict[str, list[int]] = {}
    while True:
        leaves = {node for node, kids in children.items() if node is not ROOT and not kids}
        if not leaves:
            break
        weight = len(children) - 1
        for leaf in leaves & keys:
            weights[leaf] = [weight]
        for leaf in leaves:
            del children[leaf]
        for kids in children.values():
            kids -= leaves

    path: set[str | None] = set()

    def visit(node: str | None) -> None:
        if node in path or len(weights.get(node, [])) >= MAX_VISITS:
            return
        path.add(node)
        for child in sorted(children.get(node, ())):
            visit(child)
        path.remove(node)
        if node in keys:
            weights.setdefault(node, []).append(len(path))

    visit(ROOT)
    return {node: max(values) for node, values in weights.items()}
