"""dpkg triggers for packages unpacked without dpkg: the interests dpkg would have registered at
unpack time, and the triggers the unpack would have activated.

A package's `triggers` control file (deb-triggers(5)) says which triggers it is interested in
(`interest[-await|-noawait] NAME`) and which it activates (`activate[-await|-noawait] NAME`). A
NAME starting with `/` is a file trigger: installing a file at or below that path activates it.
dpkg keeps interests in `var/lib/dpkg/triggers/File` (`PATH PACKAGE[/noawait]` lines) and
`var/lib/dpkg/triggers/NAME` (`PACKAGE[/noawait]` lines).
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.debian.layer import Package

TRIGGERS = "var/lib/dpkg/triggers"


@dataclass(frozen=True)
class Interest:
    trigger: str
    package: str
    noawait: bool

    @property
    def line(self) -> str:
        return f"{self.package}/noawait" if self.noawait else self.package


def _directives(package: Package) -> list[tuple[str, str]]:
    text = package.deb.control_files.get("triggers", (0, b""))[1].decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            out.append((words[0], words[1]))
    return out


def interests(package: Package) -> list[Interest]:
    return [Interest(name, package.info_name, kind == "interest-noawait")
            for kind, name in _directives(package) if kind.startswith("interest")]


def base_interests(files: dict[str, bytes]) -> list[Interest]:
    """The interests the base's dpkg database holds (its `triggers/` files)."""
    out = []
    for line in files.get(f"{TRIGGERS}/File", b"").decode("utf-8", "replace").splitlines():
        path, _, who = line.strip().partition(" ")
        if path and who:
            out.append(Interest(path, who.removesuffix("/noawait"), who.endswith("/noawait")))
    for path, data in files.items():
        name = path.removeprefix(f"{TRIGGERS}/")
        if path.startswith(f"{TRIGGERS}/") and "/" not in name and name[:1].islower() and name != "File":
            for who in data.decode("utf-8", "replace").split():
                out.append(Interest(name, who.removesuffix("/noawait"), who.endswith("/noawait")))
    return out


def registered(base: list[Interest], packages: list[Package]) -> dict[str, str]:
    """The trigger files dpkg's database has once `packages` are unpacked: path -> content."""
    replaced = {p.name for p in packages} | {p.info_name for p in packages}
    kept = [i for i in base if i.package not in replaced]
    new = [i for p in packages for i in interests(p)]
    files: dict[str, list[str]] = {}
    for interest in kept + new:
        if interest.trigger.startswith("/"):
            files.setdefault(f"{TRIGGERS}/File", []).append(f"{interest.trigger} {interest.line}")
        else:
            files.setdefault(f"{TRIGGERS}/{interest.trigger}", []).append(interest.line)
    return {path: "".join(f"{line}\n" for line in dict.fromkeys(lines)) for path, lines in sorted(files.items())}


def activated(base: list[Interest], packages: list[Package]) -> list[str]:
    """The triggers dpkg would have activated while unpacking `packages`: explicit `activate` directives,
    and file triggers whose path holds one of their files."""
    names: dict[str, None] = {}
    for package in packages:
        for kind, name in _directives(package):
            if kind.startswith("activate"):
                names[name] = None
    watched = {i.trigger for i in base + [i for p in packages for i in interests(p)] if i.trigger.startswith("/")}
    for package in packages:
        paths = ["/" + m.path for m in package.deb.members]
        for trigger in sorted(watched - set(names)):
            prefix = trigger.rstrip("/") + "/"
            if any(path == trigger or path.startswith(prefix) for path in paths):
                names[trigger] = None
    return list(names)
