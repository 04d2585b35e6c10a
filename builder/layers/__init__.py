"""Layers as bytes: deterministic tar, compression, normalisation, whiteouts, reading and unpacking.

Every reproducibility rule for a layer's bytes lives here. Public: `tar` (LayerItem, store_layer,
with_parents), `compress` (Codec), `normalise` (a RUN layer made reproducible), `whiteouts`
(whiteout, is_whiteout), `read` (an image's files without unpacking it), `unpack` (unpacked,
chain_id: an image's environment as a directory, once per machine), `diff` (diff_layers: two layers
compared path by path, for `verify`).
"""
