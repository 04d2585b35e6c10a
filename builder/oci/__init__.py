"""OCI image formats: descriptors and media types, image config, layouts and archives, indexes.

Public: `descriptors` (media types, Platform, descriptor, canonical_json), `config`
(ContainerConfig), `image` (BuiltImage, assemble), `layout` (write_layout, write_archive),
`files` (ImageFiles: an image on disk, blobs checked), `index` (platform_entry,
manifest_for_platform), `inspect` (inspect_image).
"""
