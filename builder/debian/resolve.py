"""Choose the `.deb` files that install a package list on top of what a base has, with libsolv.

libsolv (the `solv` wheel: the SAT solver behind zypper, dnf and mamba) decides; this module
gives it the problem as apt-get install --no-install-recommends poses it:

- the repositories: each name's *candidate* only, as apt has one candidate version a package
  (the newest the sources offer; the first source listing a version wins), or the version a
  `name=version` line pins; with the base's dpkg status as the installed repository;
- one install job per request, for that candidate (an installed package older than its candidate
  is upgraded, as `apt-get install NAME` does); Recommends ignored; nothing installed is removed
  (an answer that needs a removal is a problem, as apt-get -y without `--allow-remove` would be a
  prompt); what the base has is kept while it satisfies, and upgraded when a new package needs a
  newer one, then its reverse dependencies in the base are solved again with it;
- alternatives: apt tries `a | b` in order, so the first alternative of every choice is favoured,
  and a virtual package's providers by Priority.

The PyPI wheel is built without libsolv's Debian semantics (`Pool.setdisttype(DISTTYPE_DEB)`
answers -1 and there is no `add_debpackages`), so they are given here in the problem itself:
versions are dpkg's order mapped to ordinals per name (so libsolv's rpm comparison agrees with
dpkg's exactly), an unversioned `Provides` only satisfies unversioned dependencies (its own
`NAME^` capability), `Breaks` are conflicts, `:any` is the native package (one architecture, and
`all`), and solvables are built from deb822 paragraphs, only those the requests can reach.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import solv

from builder.debian.control import Dep, compare, paragraphs, relations
from builder.common.errors import InputError

if TYPE_CHECKING:
    from builder.debian.repo import Candidate, Index

PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
UNVERSIONED = "^"   # suffix of the capability every package and provider of NAME has (no Debian name holds it)
INSTALLED_STATES = ("installed", "half-configured", "unpacked", "triggers-awaited", "triggers-pending")
OPS = {"<<": solv.REL_LT, "<=": solv.REL_LT | solv.REL_EQ, "=": solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ,
       ">>": solv.REL_GT, "<": solv.REL_LT | solv.REL_EQ, ">": solv.REL_GT | solv.REL_EQ}


@dataclass(frozen=True)
class Request:
    name: str
    version: str | None = None   # `name=version` pins exactly
    line: int | None = None       # where packages.txt names it


@dataclass(frozen=True)
class Installed:
    """A package dpkg's status lists as installed (or unpacked: dpkg knows its files)."""

    name: str
    version: str
    arch: str
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    depends: str = ""
    pre_depends: str = ""


@dataclass
class Resolution:
    chosen: list[Candidate]                        # sorted by name
    order: list[str] = field(default_factory=list)  # the chosen names, dependencies first (libsolv's order)
    already: list[str] = field(default_factory=list)  # requested, and the base has them at their candidate


def installed_from_status(text: str) -> dict[str, Installed]:
    out = {}
    for para in paragraphs(text):
        status = para.get("Status", "").split()
        if len(status) == 3 and status[2] in INSTALLED_STATES and "Package" in para:
            out[para["Package"]] = Installed(para["Package"], para.get("Version", ""), para.get("Architecture", ""),
                                             para.get("Provides", ""), para.get("Conflicts", ""),
                                             para.get("Breaks", ""), para.get("Depends", ""),
                                             para.get("Pre-Depends", ""))
    return out


class Universe:
    """The archive's packages for one architecture (and `all`), from its indexes in apt's source order."""

    def __init__(self, indexes: list[Index], arch: str):
        self.arch = arch
        self.indexes = indexes
        self._versions: dict[str, list[Candidate]] = {}

    def versions(self, name: str) -> list[Candidate]:
        """Every version of `name` the sources offer, newest first (the first source listing one wins)."""
        if name not in self._versions:
            unique: dict[str, Candidate] = {}
            for index in self.indexes:
                for c in index.candidates(name):
                    if c.arch in (self.arch, "all") and not any(compare(v, c.version) == 0 for v in unique):
                        unique[c.version] = c
            self._versions[name] = sorted(unique.values(), key=functools.cmp_to_key(
                lambda a, b: compare(b.version, a.version)))
        return self._versions[name]

    def providers(self, virtual: str) -> list[str]:
        out: list[str] = []
        for index in self.indexes:
            out += [n for n in index.provides.get(virtual, ()) if n not in out]
        return out

    def essential(self) -> list[str]:
        names = {n for index in self.indexes for n in index.essential}
        return sorted(n for n in names if self.versions(n) and self.versions(n)[0].essential.lower() == "yes")


def resolve(requests: list[Request], universe: Universe, installed: dict[str, Installed],
            where: str = "packages.txt") -> Resolution:
    """What apt-get install --no-install-recommends would add (or upgrade) for `requests`."""
    pins = {r.name: _pinned(r, universe, where) for r in requests if r.version is not None}
    jobs_for: list[tuple[Request, str]] = []          # (request, the package name that answers it)
    already = []
    for request in requests:
        name = _answering(request, universe, installed, pins, where)
        jobs_for.append((request, name))
        base, candidate = installed.get(name), _candidate(name, universe, pins)
        if base is not None and (candidate is None or compare(base.version, candidate.version) == 0):
            already.append(name)
    problem = _Problem(universe, installed, pins)
    problem.reach([name for _, name in jobs_for] + sorted(installed))
    chosen, order = problem.solve(jobs_for, where)
    return Resolution(sorted(chosen, key=lambda c: c.name), order, already)


def _pinned(request: Request, universe: Universe, where: str) -> Candidate:
    exact = [c for c in universe.versions(request.name) if compare(c.version, request.version) == 0]
    if not exact:
        have = ", ".join(c.version for c in universe.versions(request.name)) or "none"
        raise _error(request, where, f"{request.name}={request.version}: the archive has no such version of "
                                     f"{request.name!r} (it has: {have})")
    return exact[0]


def _candidate(name: str, universe: Universe, pins: dict[str, Candidate]) -> Candidate | None:
    if name in pins:
        return pins[name]
    versions = universe.versions(name)
    return versions[0] if versions else None


def _answering(request: Request, universe: Universe, installed: dict[str, Installed],
               pins: dict[str, Candidate], where: str) -> str:
    """The real package a request names: itself, or the one provider of a virtual name (apt's rule)."""
    if _candidate(request.name, universe, pins) is not None:
        return request.name
    providers = [n for n in universe.providers(request.name)
                 if any(d.name == request.name for clause in relations(_candidate(n, universe, pins).provides)
                        for d in clause)] if request.version is None else []
    if len(providers) == 1:
        return providers[0]
    if providers:
        raise _error(request, where, f"{request.name!r} is a virtual package provided by "
                                     f"{', '.join(sorted(providers))}: name one of them")
    if request.name in installed:
        return request.name  # the base has it and no source offers it: nothing to do
    raise _error(request, where, f"package {request.name!r} does not exist in the archive (check the spelling, "
                                 "or the apt sources: component and suite)")


def _error(request: Request, where: str, message: str) -> InputError:
    return InputError((f"{where}:{request.line}: " if request.line else "") + message)


class _Problem:
    """The solvables the requests can reach, as libsolv sees them (see the module's note)."""

    def __init__(self, universe: Universe, installed: dict[str, Installed], pins: dict[str, Candidate]):
        self.u = universe
        self.installed = installed
        self.pins = pins
        self.candidates: dict[str, Candidate] = {}
        self.relations: dict[tuple[str, str], dict[str, list[list[Dep]]]] = {}  # (name, version) -> field -> clauses
        self.favoured: list[str] = []   # first alternatives of a choice
        self.targets: list[str] = []    # every name a dependency names

    # -- which packages matter --------------------------------------------------------------

    def reach(self, names: list[str]) -> None:
        """Every candidate a dependency chain from `names` can touch (alternatives and providers too)."""
        queue, seen = list(names), set(names)
        while queue:
            name = queue.pop()
            c = _candidate(name, self.u, self.pins)
            fields = []
            if c is not None:
                self.candidates[name] = c
                fields.append(self._relations(c.name, c.version, c))
            if name in self.installed:
                fields.append(self._relations(name, self.installed[name].version, self.installed[name]))
            for rels in fields:
                for clause in rels["pre_depends"] + rels["depends"]:
                    if len(clause) > 1 and clause[0].name not in self.favoured:
                        self.favoured.append(clause[0].name)
                    for dep in clause:
                        self.targets.append(dep.name)
                        for other in [dep.name] + self.u.providers(dep.name):
                            if other not in seen:
                                seen.add(other)
                                queue.append(other)

    def _relations(self, name: str, version: str, package) -> dict[str, list[list[Dep]]]:
        key = (name, version, type(package).__name__)
        if key not in self.relations:
            try:
                self.relations[key] = {f: relations(getattr(package, f), self.u.arch)
                                       for f in ("pre_depends", "depends", "provides", "conflicts", "breaks")}
            except ValueError as exc:
                raise InputError(f"{name} {version}: {exc}") from None
        return self.relations[key]

    # -- the pool ------------------------------------------------------------------------------

    def _ordinals(self) -> dict[str, dict[str, str]]:
        """Per name, each version string seen for it -> an ordinal string libsolv compares as dpkg would."""
        seen: dict[str, set[str]] = {}
        for (name, version, _), rels in self.relations.items():
            seen.setdefault(name, set()).add(version)
            for clauses in rels.values():
                for clause in clauses:
                    for dep in clause:
                        if dep.version is not None:
                            seen.setdefault(dep.name, set()).add(dep.version)
        out = {}
        for name, versions in seen.items():
            ordered = sorted(versions, key=functools.cmp_to_key(compare))
            ranks, rank = {}, 0
            for i, version in enumerate(ordered):
                if i and compare(ordered[i - 1], version) != 0:
                    rank += 1
                ranks[version] = f"{rank + 1:06d}"
            out[name] = ranks
        return out

    def solve(self, jobs_for: list[tuple[Request, str]], where: str) -> tuple[list[Candidate], list[str]]:
        pool = solv.Pool()
        pool.setarch(self.u.arch)
        ordinals = self._ordinals()
        self._ordinal_names = {(n, o): v for n, ranks in ordinals.items() for v, o in ranks.items()}
        archive, system = pool.add_repo("archive"), pool.add_repo("installed")
        by_id: dict[int, Candidate] = {}
        for name, c in sorted(self.candidates.items()):
            s = self._solvable(pool, archive, name, c.version, c.arch, self._relations(name, c.version, c), ordinals)
            by_id[s.id] = c
        for name, pkg in sorted(self.installed.items()):
            self._solvable(pool, system, name, pkg.version, pkg.arch, self._relations(name, pkg.version, pkg), ordinals)
        pool.installed = system
        pool.createwhatprovides()
        jobs = []
        for request, name in jobs_for:
            c = self.candidates.get(name)
            if c is None:
                continue  # installed, and no source offers it
            what = pool.rel2id(pool.str2id(name), pool.str2id(ordinals[name][c.version]), solv.REL_EQ)
            jobs.append(pool.Job(solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE_NAME, what))
        for name in self._favour_order():
            jobs.append(pool.Job(solv.Job.SOLVER_FAVOR | solv.Job.SOLVER_SOLVABLE_NAME, pool.str2id(name)))
        solver = pool.Solver()
        solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        solver.set_flag(solv.Solver.SOLVER_FLAG_ALLOW_UNINSTALL, 0)
        problems = solver.solve(jobs)
        if problems:
            raise self._problems(problems, jobs_for, where)
        transaction = solver.transaction()
        removed = [s.name for s in transaction.steps()
                   if transaction.steptype(s, solv.Transaction.SOLVER_TRANSACTION_SHOW_ALL)
                   == solv.Transaction.SOLVER_TRANSACTION_ERASE]
        if removed:
            raise InputError(f"{where}: installing it would remove {', '.join(sorted(removed))} from the base "
                             "(apt-get would ask first); airbuild never removes a base's packages")
        new = [s for s in transaction.newsolvables() if s.id in by_id]
        transaction.order()
        order = [s.name for s in transaction.steps() if s.id in by_id]
        return [by_id[s.id] for s in new], order

    def _favour_order(self) -> list[str]:
        """The favour jobs, least favoured first (libsolv favours a later job over an earlier one), as apt
        chooses: a virtual package's providers by Priority, a real package over those that provide its name,
        the first alternative of a choice over the others."""
        providers = {name for name, c in self.candidates.items() if c.provides}
        by_priority = sorted(providers, key=lambda n: (-PRIORITY_RANK.get(self.candidates[n].priority, 5), n))
        real = [n for n in dict.fromkeys(self.targets) if n in self.candidates]
        first = [n for n in reversed(self.favoured) if n in self.candidates]
        return list(reversed(dict.fromkeys(reversed(by_priority + real + first))))  # a name's last place counts

    def _solvable(self, pool, repo, name: str, version: str, arch: str, rels, ordinals) -> "solv.XSolvable":
        s = repo.add_solvable()
        s.name = name
        s.evr = ordinals[name][version]
        s.arch = "noarch" if arch == "all" else arch
        s.add_deparray(solv.SOLVABLE_PROVIDES, pool.rel2id(pool.str2id(name), pool.str2id(s.evr), solv.REL_EQ))
        s.add_deparray(solv.SOLVABLE_PROVIDES, pool.str2id(name + UNVERSIONED))
        for clause in rels["provides"]:
            for dep in clause:
                if dep.version is not None and dep.op == "=":
                    s.add_deparray(solv.SOLVABLE_PROVIDES, self._dep(pool, dep, ordinals))
                s.add_deparray(solv.SOLVABLE_PROVIDES, pool.str2id(dep.name + UNVERSIONED))
        for key, field_name in ((solv.SOLVABLE_REQUIRES, "pre_depends"), (solv.SOLVABLE_REQUIRES, "depends")):
            for clause in rels[field_name]:
                s.add_deparray(key, self._clause(pool, clause, ordinals))
        for field_name in ("conflicts", "breaks"):
            for clause in rels[field_name]:
                for dep in clause:
                    s.add_deparray(solv.SOLVABLE_CONFLICTS, self._dep(pool, dep, ordinals))
        return s

    def _clause(self, pool, clause: list[Dep], ordinals) -> int:
        ids = [self._dep(pool, dep, ordinals) for dep in clause]
        out = ids[-1]
        for other in reversed(ids[:-1]):
            out = pool.rel2id(other, out, solv.REL_OR)
        return out

    @staticmethod
    def _dep(pool, dep: Dep, ordinals) -> int:
        if dep.version is None:
            return pool.str2id(dep.name + UNVERSIONED)
        return pool.rel2id(pool.str2id(dep.name), pool.str2id(ordinals[dep.name][dep.version]), OPS[dep.op])

    # -- explanations -------------------------------------------------------------------------

    def _problems(self, problems, jobs_for: list[tuple[Request, str]], where: str) -> InputError:
        """libsolv's explanation of each problem, in Debian's words, naming the packages.txt line it starts from."""
        lines = []
        for problem in problems:
            rules = problem.findallproblemrules()
            text = [self._words(rule.info().problemstr()) for rule in rules]
            mentioned = []
            for rule in rules:
                info = rule.info()
                for solvable in (info.solvable, info.othersolvable):
                    if solvable is not None and solvable.name not in mentioned:
                        mentioned.append(solvable.name)
                if info.type == solv.Solver.SOLVER_RULE_JOB and info.dep is not None:
                    mentioned.append(str(info.dep).split()[0])
            requests = [r for r, name in jobs_for if name in mentioned]
            if not requests:  # a package deeper down: the requests whose dependencies reach it
                requests = [r for r, name in jobs_for if self._reachable(name) & set(mentioned)]
            named = [r for r in requests if r.line] or [r for r, _ in jobs_for if r.line][:1]
            at = f"{where}:{named[0].line}: " if named else f"{where}: "
            names = ", ".join(r.name if r.version is None else f"{r.name}={r.version}" for r in requests) or "the list"
            unique = list(dict.fromkeys(t for t in text if t))
            lines.append(f"{at}cannot install {names}: " + "; ".join(unique))
        return InputError("\n".join(lines))

    def _reachable(self, name: str) -> set[str]:
        """The candidates `name`'s dependencies (any alternative, any provider) reach, `name` included."""
        queue, seen = [name], {name}
        while queue:
            c = self.candidates.get(queue.pop())
            if c is None:
                continue
            rels = self._relations(c.name, c.version, c)
            for clause in rels["pre_depends"] + rels["depends"]:
                for dep in clause:
                    for other in [dep.name] + self.u.providers(dep.name):
                        if other not in seen:
                            seen.add(other)
                            queue.append(other)
        return seen

    def _words(self, text: str) -> str:
        """libsolv's text with Debian's names and versions back (`curl-000002.amd64` -> `curl 7.88.1-10`)."""
        text = re.sub(r"([a-z0-9][a-z0-9+.\-]*)\^", r"\1", text)
        text = re.sub(r"([a-z0-9][a-z0-9+.\-]*?)-(\d{6})\.(noarch|[a-z0-9]+)\b",
                      lambda m: f"{m.group(1)} {self._ordinal_names.get((m.group(1), m.group(2)), m.group(2))}", text)
        rel = {"<": "<<", "<=": "<=", "=": "=", ">=": ">=", ">": ">>"}
        return re.sub(r"([a-z0-9][a-z0-9+.\-]*) (<=|>=|<|>|=) (\d{6})\b",
                      lambda m: f"{m.group(1)} ({rel[m.group(2)]} "
                                f"{self._ordinal_names.get((m.group(1), m.group(3)), m.group(3))})", text)
