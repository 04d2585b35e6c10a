"""Names of the files and directories airbuild reads and writes in a project."""

MANIFEST_NAME = "astro.yaml"
DOCKERIGNORE_NAME = ".dockerignore"
OUTPUT_DIR = ".airbuild"  # outputs and caches; never in a layer
