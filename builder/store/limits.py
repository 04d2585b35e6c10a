"""How big the store may grow: sizes as people write them (`500MB`, `20GB`, `1.5GiB`), and the configured limit.

The limit comes from AIRBUILD_CACHE_MAX_SIZE, else the user config file's `[cache] max_size`
(`~/.config/airbuild/config.toml`); `[cache] keep_days` evicts what was not used for that long.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from builder.common.errors import InputError

ENV_MAX_SIZE = "AIRBUILD_CACHE_MAX_SIZE"
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
         "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str, where: str) -> int:
    """Bytes in `text` (`500MB`, `20GB`, `1.5GiB`, `1024`); an InputError naming `where` otherwise."""
    match = _SIZE.fullmatch(str(text))
    unit = match and UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise InputError(f"{where}: {text!r} is not a size; write e.g. 500MB, 20GB or 1.5GiB "
                         f"(KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024)")
    return int(float(match.group(1)) * unit)


@dataclass(frozen=True)
class Limits:
    max_size: int | None = None   # bytes; None: no limit
    keep_days: float | None = None  # evict what was not used for this long; None: never by age

    @property
    def any(self) -> bool:
        return self.max_size is not None or self.keep_days is not None


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "airbuild" / "config.toml"


def configured() -> Limits:
    """The limits set by the environment or the user config file (none: nothing is evicted after builds)."""
    path = config_file()
    section: dict = {}
    try:
        section = tomllib.loads(path.read_text()).get("cache", {})
    except FileNotFoundError:
        pass
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise InputError(f"{path}: not a valid TOML file ({exc})") from None
    env = os.environ.get(ENV_MAX_SIZE)
    max_size = (parse_size(env, ENV_MAX_SIZE) if env
                else parse_size(section["max_size"], f"{path}: [cache] max_size") if "max_size" in section else None)
    keep_days = section.get("keep_days")
    if keep_days is not None and (not isinstance(keep_days, (int, float)) or keep_days < 0):
        raise InputError(f"{path}: [cache] keep_days must be a number of days, not {keep_days!r}")
    return Limits(max_size, keep_days)
