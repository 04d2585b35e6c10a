"""Choose the `.deb` files that install a package list on top of what a base has.

What apt-get install --no-install-recommends does, without apt: `Pre-Depends` and
`Depends` with version relations, alternatives (first satisfiable wins), virtual
packages through `Provides`, architecture `all` beside the native one. A dependency
the base already satisfies adds nothing; one it satisfies with too old a version is
upgraded. Then `Conflicts` and `Breaks` are checked both ways. Every failure names
the chain of packages that led to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from builder.debian.control import Dep, compare, paragraphs, provides, relations, satisfies
from builder.common.errors import InputError

if TYPE_CHECKING:
    from builder.debian.repo import Candidate

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


@dataclass(frozen=True)
class Request:
    name: str
    version: str | None = None   # `name=version` pins exactly
    line: int | None = None       # where packages.txt names it


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    arch: str
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""


@dataclass
class Resolution:
    chosen: list[Candidate]                        # sorted by name
    reasons: dict[str, tuple[str, ...]]            # name -> chain from a request
    already: list[str] = field(default_factory=list)  # requested, and the base has them


def installed_from_status(text: str) -> dict[str, Installed]:
    out = {}
    for para in paragraphs(text):
        status = para.get("Status", "").split()
        if len(status) == 3 and status[2] in ("installed", "half-configured", "unpacked", "triggers-awaited",
                                              "triggers-pending"):
            out[para["Package"]] = Installed(para["Package"], para.get("Version", ""), para.get("Architecture", ""),
                                             para.get("Provides", ""), para.get("Conflicts", ""),
                                             para.get("Breaks", ""))
    return out


class Universe:
    """The archive's packages for one architecture, newest first, with who provides what."""

    def __init__(self, candidates: list[Candidate], arch: str):
        self.arch = arch
        self.by_name: dict[str, list[Candidate]] = {}
        for c in candidates:
            if c.arch in (arch, "all"):
                self.by_name.setdefault(c.name, []).append(c)
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = {}
        for name, versions in self.by_name.items():
            unique = {}
            for c in versions:  # the first source listing a version wins
                unique.setdefault(c.version, c)
            ordered = sorted(unique.values(), key=_VersionKey, reverse=True)
            self.by_name[name] = ordered
            for c in ordered:
                if c.provides:
                    for virtual, version in provides(c.provides):
                        self.providers.setdefault(virtual, []).append((c, version))

    def versions(self, name: str) -> list[Candidate]:
        return self.by_name.get(name, [])

    def essential(self) -> list[str]:
        return sorted(n for n, cs in self.by_name.items() if cs[0].essential.lower() == "yes")


class _VersionKey:
    def __init__(self, c: Candidate):
        self.version = c.version

    def __lt__(self, other: "_VersionKey") -> bool:
        return compare(self.version, other.version) < 0


def resolve(requests: list[Request], universe: Universe, installed: dict[str, Installed],
            where: str = "packages.txt") -> Resolution:
    state = _State(universe, installed, where)
    for request in requests:
        state.request(request)
    state.expand()
    state.check_conflicts()
    chosen = sorted(state.chosen.values(), key=lambda c: c.name)
    return Resolution(chosen, state.reasons, state.already)


class _State:
    def __init__(self, universe: Universe, installed: dict[str, Installed], where: str):
        self.u = universe
        self.installed = installed
        self.where = where
        self.chosen: dict[str, Candidate] = {}
        self.reasons: dict[str, tuple[str, ...]] = {}
        self.pending: list[str] = []
        self.already: list[str] = []

    # -- requests ------------------------------------------------------------------------

    def request(self, req: Request) -> None:
        chain = (req.name,)
        if req.version is None:
            base = self.installed.get(req.name)
            if base is not None or req.name in self.chosen:
                if base is not None and req.name not in self.chosen:
                    self.already.append(req.name)
                return
            versions = self.u.versions(req.name)
            if versions:
                self._choose(versions[0], chain)
                return
            providers = self._providers(Dep(req.name))
            if len(providers) == 1:
                self._choose(providers[0], chain)
                return
            if providers:
                names = ", ".join(sorted({c.name for c in providers}))
                raise self._error(req, f"{req.name!r} is a virtual package provided by {names}: name one of them")
            raise self._error(req, f"package {req.name!r} does not exist in the archive{self._sources_hint()}")
        base = self.installed.get(req.name)
        if base is not None and base.version == req.version and req.name not in self.chosen:
            self.already.append(req.name)
            return
        exact = [c for c in self.u.versions(req.name) if compare(c.version, req.version) == 0]
        if not exact:
            have = ", ".join(c.version for c in self.u.versions(req.name)) or "none"
            raise self._error(req, f"{req.name}={req.version}: the archive has no such version of {req.name!r} "
                                   f"(it has: {have})")
        current = self.chosen.get(req.name)
        if current is not None and current.version != exact[0].version:
            raise self._error(req, f"{req.name}={req.version} conflicts with {req.name} {current.version}, "
                                   f"needed by {' -> '.join(self.reasons[req.name])}")
        self._choose(exact[0], chain)

    def _error(self, req: Request, message: str) -> InputError:
        where = f"{self.where}:{req.line}: " if req.line else ""
        return InputError(where + message)

    def _sources_hint(self) -> str:
        return " (check the spelling, or the apt sources: component and suite)"

    # -- dependencies ----------------------------------------------------------------------

    def _choose(self, c: Candidate, chain: tuple[str, ...]) -> None:
        self.chosen[c.name] = c
        self.reasons[c.name] = chain
        self.pending.append(c.name)

    def expand(self) -> None:
        while self.pending:
            name = self.pending.pop(0)
            c = self.chosen[name]
            chain = self.reasons[name]
            try:
                clauses = relations(c.pre_depends, self.u.arch) + relations(c.depends, self.u.arch)
            except ValueError as exc:
                raise InputError(f"{c.name} {c.version}: {exc}") from None
            for clause in clauses:
                if any(self._satisfied(d) for d in clause):
                    continue
                self._satisfy(clause, chain)

    def _satisfied(self, dep: Dep) -> bool:
        c = self.chosen.get(dep.name)
        if c is not None and satisfies(c.version, dep.op, dep.version):
            return True
        base = self.installed.get(dep.name)
        if c is None and base is not None and satisfies(base.version, dep.op, dep.version):
            return True
        for pkg, version in self._current_provides(dep.name):
            if dep.op is None or (version is not None and satisfies(version, dep.op, dep.version)):
                return True
        return False

    def _current_provides(self, virtual: str) -> list[tuple[str, str | None]]:
        out = [(c.name, v) for c, v in self.u.providers.get(virtual, []) if self.chosen.get(c.name) is c]
        for pkg in self.installed.values():
            if pkg.provides and pkg.name not in self.chosen:
                out += [(pkg.name, v) for name, v in provides(pkg.provides) if name == virtual]
        return out

    def _satisfy(self, clause: list[Dep], chain: tuple[str, ...]) -> None:
        for dep in clause:
            choice = self._candidate_for(dep)
            if choice is not None:
                current = self.chosen.get(choice.name)
                if current is not None and current is not choice:
                    continue  # another version is already chosen and does not do: try the next alternative
                self._choose(choice, chain + (str(dep) if choice.name == dep.name else f"{dep} ({choice.name})",))
                return
        wanted = " | ".join(str(d) for d in clause)
        reasons = []
        for dep in clause:
            have = [c.version for c in self.u.versions(dep.name)]
            if dep.name in self.chosen:
                reasons.append(f"{dep.name} {self.chosen[dep.name].version} is already chosen "
                               f"(for {' -> '.join(self.reasons[dep.name])})")
            elif have:
                reasons.append(f"the archive has {dep.name} {', '.join(have)}")
            elif dep.name in self.u.providers:
                reasons.append(f"no provider of {dep.name} matches")
            else:
                reasons.append(f"{dep.name} is not in the archive")
        raise InputError(f"cannot install {' -> '.join(chain)}: it needs {wanted}, and {'; '.join(reasons)}")

    def _candidate_for(self, dep: Dep) -> Candidate | None:
        for c in self.u.versions(dep.name):
            if satisfies(c.version, dep.op, dep.version):
                return c
        providers = self._providers(dep)
        return providers[0] if providers else None

    def _providers(self, dep: Dep) -> list[Candidate]:
        found = [c for c, v in self.u.providers.get(dep.name, [])
                 if (dep.op is None or (v is not None and satisfies(v, dep.op, dep.version)))
                 and self.u.versions(c.name)[0] is c]
        chosen = [c for c in found if self.chosen.get(c.name) is c]
        if chosen:
            return chosen
        return sorted(found, key=lambda c: (PRIORITY_RANK.get(c.priority, 5), c.name))

    # -- conflicts --------------------------------------------------------------------------------

    def check_conflicts(self) -> None:
        present: dict[str, tuple[str, str, str]] = {}   # name -> (version, provides, origin)
        for pkg in self.installed.values():
            if pkg.name not in self.chosen:
                present[pkg.name] = (pkg.version, pkg.provides, "the base")
        for c in self.chosen.values():
            present[c.name] = (c.version, c.provides, " -> ".join(self.reasons[c.name]))
        for name, (version, conflicts, breaks, origin) in self._all_conflict_fields():
            for field_name, value in (("Conflicts", conflicts), ("Breaks", breaks)):
                for clause in relations(value, self.u.arch):
                    for dep in clause:
                        hit = self._conflict_hit(dep, name, present)
                        if hit is not None and (name in self.chosen or hit in self.chosen):
                            raise InputError(
                                f"{name} {version} ({origin}) {field_name} {dep}, and {hit} "
                                f"{present[hit][0]} ({present[hit][2]}) would be installed too")

    def _all_conflict_fields(self):
        for pkg in self.installed.values():
            if pkg.name not in self.chosen:
                yield pkg.name, (pkg.version, pkg.conflicts, pkg.breaks, "the base")
        for c in self.chosen.values():
            yield c.name, (c.version, c.conflicts, c.breaks, " -> ".join(self.reasons[c.name]))

    @staticmethod
    def _conflict_hit(dep: Dep, owner: str, present: dict[str, tuple[str, str, str]]) -> str | None:
        if dep.name != owner and dep.name in present and satisfies(present[dep.name][0], dep.op, dep.version):
            return dep.name
        if dep.op is None:
            for name, (_, provided, _) in present.items():
                if name != owner and provided and any(v == dep.name for v, _ in provides(provided)):
                    return name
        return None
