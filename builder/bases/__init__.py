"""The base image, resolved into the store: one module per source.

Public: `resolve` (resolve_base), `image` (BaseImage, scratch), `registry` (from_registry),
`layout` (from_oci_layout), `archive` (import_archive), `rootfs` (cached_by_stat), `debian`
(debian_base: a base built from Debian's packages), `accounts` (resolve_owner from the base's
passwd), `onbuild` (the base's ONBUILD triggers: replaced by rules or run).
"""
