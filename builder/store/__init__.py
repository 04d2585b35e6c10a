"""The content-addressed store: blobs by digest, layer records by key, small JSON records, and its upkeep.

Every write is a temp file (locked by its writer), fsync and rename; reads of blobs are checked.
Public: `store` (Store, LayerRecord, WorkDir), `entries` (kinds, `usage`: `cache du`), `gc` (`collect`:
`cache gc`), `verify` (`cache verify`), `limits` (sizes, the configured limit), `sweep` (dead writers' temps).
"""
