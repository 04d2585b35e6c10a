"""The Debian pieces on their own: packages.txt, relations and versions, the resolver (libsolv), the library cache."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.actions.debian.package_list import parse_package_list
from builder.debian.control import Dep, compare, relations, satisfies
from builder.debian.deb import Deb, DebMember
from builder.debian.layer import Package
from builder.debian.maintscripts import preinst_order
from builder.debian.triggers import activated, base_interests, registered
from builder.layers.overlay import read_upper
from builder.debian.ldcache import libcmp, parse_cache, write_cache
from builder.debian.repo import Index, dearmor, parse_sources, release_files
from builder.debian.resolve import Installed, Request, Universe, installed_from_status, resolve
from builder.debian.scripts import install_calls, parse_admin
from builder.common.errors import InputError


def test_packages_txt_as_astro_reads_it(tmp_path):
    text = "# system tools\r\ncurl\r\n\r\nlibpq5  # for postgres\n  git=1:2.39.5-0+deb12u1 vim\n\n"
    requests = parse_package_list(text, tmp_path / "packages.txt")
    assert [(r.name, r.version, r.line) for r in requests] == [
        ("curl", None, 2), ("libpq5", None, 4), ("git", "1:2.39.5-0+deb12u1", 5), ("vim", None, 5)]
    with pytest.raises(InputError, match=r"packages.txt:2: 'Bad_Name'"):
        parse_package_list("curl\nBad_Name\n", tmp_path / "packages.txt")
    with pytest.raises(InputError, match="architecture qualifiers"):
        parse_package_list("curl:i386\n", tmp_path / "packages.txt")
    with pytest.raises(InputError, match="listed twice"):
        parse_package_list("curl=1\ncurl=2\n", tmp_path / "packages.txt")


def test_versions_and_relations():
    assert compare("1.0~rc1", "1.0") < 0 and compare("1:0.9", "2.0") > 0 and compare("2.36-9+deb12u4", "2.36-9+deb12u10") < 0
    assert satisfies("1.2", ">=", "1.2") and not satisfies("1.2", ">>", "1.2") and satisfies("1.2", None, None)
    assert relations("libc6 (>= 2.34), a | b:any (<< 3) [amd64], c [!amd64]", "amd64") == [
        [Dep("libc6", ">=", "2.34")], [Dep("a"), Dep("b", "<<", "3", "any")]]


def index(*packages: tuple) -> Index:
    """A Packages index from (name, version, fields) tuples, as the archive writes it."""
    text = ""
    for name, version, fields in packages:
        arch = fields.pop("Architecture", "amd64")
        text += (f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
                 + "".join(f"{k}: {v}\n" for k, v in fields.items())
                 + f"Filename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {'0' * 64}\n\n")
    return Index.parse(text, "http://archive")


def test_resolver_follows_alternatives_virtuals_and_versions():
    universe = Universe([index(
        ("app", "1.0", {"Depends": "libfoo (>= 2), mail-transport-agent, missing-one | libbar", "Pre-Depends": "tool"}),
        ("libfoo", "1.0", {}), ("libfoo", "2.1", {}), ("libbar", "1.0", {}),
        ("tool", "1.0", {"Architecture": "all"}),
        ("postfix", "1.0", {"Provides": "mail-transport-agent", "Priority": "optional"}),
        ("exim4", "1.0", {"Provides": "mail-transport-agent", "Priority": "standard"}),
        ("other-arch", "1.0", {"Architecture": "arm64"}),
    )], "amd64")
    installed = {"tool": Installed("tool", "0.9", "all")}
    result = resolve([Request("app")], universe, installed)
    chosen = {c.name: c.version for c in result.chosen}
    assert chosen == {"app": "1.0", "libfoo": "2.1", "exim4": "1.0", "libbar": "1.0"}, "tool: the base has it"
    assert universe.versions("other-arch") == []
    assert result.order.index("libfoo") < result.order.index("app"), "dependencies first"


def test_unversioned_provides_do_not_satisfy_versioned_dependencies():
    universe = Universe([index(("app", "1", {"Depends": "virt (>= 2)"}), ("unversioned", "1", {"Provides": "virt"}),
                               ("versioned", "1", {"Provides": "virt (= 2.5)"}))], "amd64")
    assert [c.name for c in resolve([Request("app")], universe, {}).chosen] == ["app", "versioned"]


def test_an_upgrade_takes_the_bases_reverse_dependencies_along():
    universe = Universe([index(("libfoo", "2", {}), ("bar", "2", {"Depends": "libfoo (= 2)"}),
                               ("app", "1", {"Depends": "libfoo (>= 2)"}))], "amd64")
    installed = {"libfoo": Installed("libfoo", "1", "amd64"),
                 "bar": Installed("bar", "1", "amd64", depends="libfoo (= 1)")}
    assert {c.name: c.version for c in resolve([Request("app")], universe, installed).chosen} == \
        {"app": "1", "libfoo": "2", "bar": "2"}


def test_resolver_errors_name_the_line_and_libsolvs_reason():
    universe = Universe([index(("app", "1.0", {"Depends": "libfoo (>= 3)"}), ("libfoo", "2.0", {}),
                               ("x", "1.0", {"Conflicts": "y"}), ("y", "1.0", {}))], "amd64")
    with pytest.raises(InputError, match=r"packages.txt:3: cannot install app: nothing provides libfoo \(>= 3\) "
                                         r"needed by app 1.0"):
        resolve([Request("app", line=3)], universe, {})
    with pytest.raises(InputError, match=r"packages.txt:4: package 'nope' does not exist"):
        resolve([Request("nope", line=4)], universe, {})
    with pytest.raises(InputError, match=r"libfoo=9: the archive has no such version.*it has: 2.0"):
        resolve([Request("libfoo", "9")], universe, {})
    with pytest.raises(InputError, match=r"packages.txt:1: cannot install x, y: .*x 1.0 conflicts with y"):
        resolve([Request("x", line=1), Request("y", line=2)], universe, {})


def test_base_status_and_sources_are_read():
    status = ("Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n"
              "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    assert list(installed_from_status(status)) == ["a"]
    sources = parse_sources({
        "etc/apt/sources.list": b"deb [signed-by=/k.gpg] http://m/debian bookworm main contrib\n# deb x y z\n",
        "etc/apt/sources.list.d/d.sources": b"Types: deb\nURIs: http://m/debian/\nSuites: bookworm bookworm-updates\n"
                                            b"Components: main\n\nTypes: deb-src\nURIs: http://s\nSuites: x\n"})
    assert [(s.uri, s.suite, s.components, s.signed_by) for s in sources] == [
        ("http://m/debian", "bookworm", ("main", "contrib"), "/k.gpg"),
        ("http://m/debian", "bookworm", ("main",), None), ("http://m/debian", "bookworm-updates", ("main",), None)]
    release = "Origin: Debian\nSHA256:\n " + "a" * 64 + " 12 main/binary-amd64/Packages.xz\n"
    assert release_files(release) == {"main/binary-amd64/Packages.xz": ("a" * 64, 12)}
    assert dearmor(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAEC\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n") == b"\0\1\2"


def test_ld_cache_is_written_in_ldconfigs_order(debian_rootfs: Path):
    """Our writer reproduces the order the real ldconfig chose for the Debian base's cache."""
    with tarfile.open(debian_rootfs) as tar:
        data = tar.extractfile("./etc/ld.so.cache").read()
    entries = parse_cache(data)
    assert len(entries) > 50
    assert parse_cache(write_cache(list(reversed(entries)))) == entries
    assert libcmp("libfoo.so.10", "libfoo.so.9") > 0 and libcmp("liba.so", "libb.so") < 0


def test_alternatives_are_read_from_scripts_and_admin_files():
    script = ("if true; then\n  update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n"
              "    --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz\nfi\n"
              "update-alternatives --install $X y /z 1\n")
    assert install_calls(script) == [["/usr/bin/awk", "awk", "/usr/bin/mawk", "5", "--slave",
                                      "/usr/share/man/man1/awk.1.gz", "awk.1.gz", "/usr/share/man/man1/mawk.1.gz"]]
    group = parse_admin("auto\n/usr/bin/awk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\n\n/usr/bin/mawk\n5\n"
                        "/usr/share/man/man1/mawk.1.gz\n\n")
    assert group.link == "/usr/bin/awk" and group.slaves == [("awk.1.gz", "/usr/share/man/man1/awk.1.gz")]
    assert group.choices == {"/usr/bin/mawk": (5, {"awk.1.gz": "/usr/share/man/man1/mawk.1.gz"})}


def _package(name: str, triggers: str, paths: list[str], depends: str = "") -> Package:
    control = f"Package: {name}\nVersion: 1\nArchitecture: amd64\n" + (f"Depends: {depends}\n" if depends else "")
    members = [DebMember(p, "file", 0o644, 0, 0) for p in paths]
    return Package(name, "1", "amd64", Deb(control, {"triggers": (0o644, triggers.encode())}, members, []))


def test_triggers_the_unpack_would_have_registered_and_activated():
    base = base_interests({"var/lib/dpkg/triggers/File": b"/usr/share/debianutils/shells.d debianutils/noawait\n",
                           "var/lib/dpkg/triggers/ldconfig": b"libc-bin\n"})
    fontconfig = _package("fontconfig", "interest-noawait /usr/share/fonts\n", ["usr/bin/fc-cache"])
    fonts = _package("fonts-dejavu-core", "", ["usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"])
    library = _package("libfoo1", "activate-noawait ldconfig\n", ["usr/lib/x86_64-linux-gnu/libfoo.so.1"])
    files = registered(base, [fontconfig, fonts, library])
    assert files["var/lib/dpkg/triggers/File"] == ("/usr/share/debianutils/shells.d debianutils/noawait\n"
                                                   "/usr/share/fonts fontconfig/noawait\n")
    assert files["var/lib/dpkg/triggers/ldconfig"] == "libc-bin\n"
    assert activated(base, [fontconfig, fonts, library]) == ["ldconfig", "/usr/share/fonts"]
    assert activated(base, [fontconfig]) == []


def test_preinsts_run_after_what_they_depend_on():
    a = _package("a", "", [], depends="b, c | d")
    b = _package("b", "", [], depends="c")
    c = _package("c", "", [])
    assert [p.name for p in preinst_order([a, b, c])] == ["c", "b", "a"]


def test_an_upper_directory_reads_back_as_a_layer_with_whiteouts(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc" / "gone.d").mkdir(parents=True)
    (upper / "etc" / "new.conf").write_text("x\n")
    os.link(upper / "etc" / "new.conf", upper / "etc" / "a-link")
    os.mknod(upper / "etc" / "removed", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "gone.d", "trusted.overlay.opaque", b"y")
    items = {i.path: i for i in read_upper(upper)}
    assert sorted(items) == ["etc", "etc/.wh.removed", "etc/a-link", "etc/gone.d", "etc/gone.d/.wh..wh..opq",
                             "etc/new.conf"]
    assert items["etc/a-link"].kind == "file" and items["etc/new.conf"].kind == "hardlink"
    assert items["etc/new.conf"].link == "etc/a-link", "the first path in the layer's order holds the body"
