"""Where airbuild reads and writes: the names of its files in a project, and the store's directory."""

import os
from pathlib import Path

MANIFEST_NAME = "astro.yaml"
DOCKERIGNORE_NAME = ".dockerignore"
OUTPUT_DIR = ".airbuild"  # outputs and caches; never in a layer


def default_store_dir() -> Path:
    """AIRBUILD_CACHE_DIR, else the user cache directory's `airbuild` (e.g. ~/.cache/airbuild)."""
    configured = os.environ.get("AIRBUILD_CACHE_DIR")
    if configured:
        return Path(configured)
    from platformdirs import user_cache_dir  # only where no directory is configured

    return Path(user_cache_dir("airbuild"))
