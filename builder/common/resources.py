"""Where the data files that ship beside the package are: rules/ and templates/.

In a checkout they are read in place; an installed wheel carries them as the packages
`airbuild_rules` and `airbuild_templates`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # builder/common/resources.py -> the checkout


def data_dir(name: str) -> Path:
    """`rules` or `templates`."""
    local = CHECKOUT / name
    if local.is_dir():
        return local
    return Path(str(importlib.resources.files(f"airbuild_{name}")))


def template_text(name: str) -> str:
    return (data_dir("templates") / name).read_text()
