"""Shared by every stage, depending on none: errors users see, secrets masking, crash-safe writes.

Public: `errors` (AirbuildError, InputError exit 2, BuildError exit 1, SetupError), `masking`
(install, add, text, value), `atomic` (atomic_writer, atomic_write_bytes), `paths` (project file
names, default_store_dir), `hashing` (json_sha256), `resources` (rules/ and templates/ dirs),
`progress` (Progress), `text` (read_utf8: a project's text file, or an input error), `tools` (programs from airbuild's own installation), `crash` (internal errors).
"""
