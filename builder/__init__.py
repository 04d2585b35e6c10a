"""airbuild: reproducible, content-addressed OCI images for Airflow projects."""

import os

# pydantic scans every installed distribution for plugins at import (~12 ms of a
# ~100 ms no-op build); airbuild uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

__version__ = "0.1.0"
