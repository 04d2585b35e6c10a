"""The content-addressed store: blobs by digest, layer records by key, small JSON records.

Every write is a temp file, fsync and rename; reads of blobs are checked. Public: `store`
(Store, LayerRecord).
"""
