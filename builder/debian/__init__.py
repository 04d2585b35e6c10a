"""Debian's formats and repositories: signed indexes, .deb files, dependency resolution, dpkg's
database, maintainer scripts' products. Used by the `debian:` base and the system-packages action.

Public: `repo` (AptSource, Keyring, indexes), `resolve` (Request, resolution by libsolv), `control`,
`deb` (reading .deb members), `fetch` (fetch_verified), `install` (resolve and install into a
layer), `layer`, `ldcache`, `scripts`.
"""
