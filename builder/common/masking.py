"""Secrets never reach what airbuild prints or writes: every value known to be secret shows as `***`.

This is how CI systems mask secrets in logs, done by airbuild itself so that a CI job that runs
it on untrusted DAG code cannot leak its secrets through a report. Known secrets are the values
of the caller's environment variables whose names say so (`TOKEN`, `SECRET`, `PASSWORD`, `KEY`,
`CREDENTIAL`), the password inside an `AIRFLOW_CONN_*` URI, and whatever the code registers with
`add()` as it reads it (registry and index credentials, `--secret` values, `.env` values).
`install()` puts masking writers in front of stdout and stderr; files airbuild writes (JSON
records, JUnit reports) pass their values through `value()` first.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
SENSITIVE_NAME_PARTS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
# A shorter value ("1", "yes") would mask ordinary words everywhere; CI systems draw the same line.
MIN_LENGTH = 4
_URL_CREDENTIALS = re.compile(r"(//)[^/@\s:]+:[^/@\s]+@")

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
T = TypeVar("T")


def add(secret: str | None) -> None:
    """Mask `secret` from now on, also in the forms it takes inside a JSON string or a URL."""
    global _pattern
    if not secret or len(secret) < MIN_LENGTH:
        return
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
    forms = {form for form in forms if len(form) >= MIN_LENGTH} - _secrets
    if forms:
        _secrets.update(forms)
        _pattern = None


def sensitive_name(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SENSITIVE_NAME_PARTS)


def add_environment(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """The secrets an environment carries: values of sensitively named variables, connection passwords."""
    for name, value in environ.items():
        if sensitive_name(name):
            add(value)
        elif name.startswith("AIRFLOW_CONN_"):
            add(connection_password(value))


def connection_password(uri: str) -> str | None:
    """The password of an Airflow connection given as a URI (JSON connections: their `password`)."""
    if uri.lstrip().startswith("{"):
        try:
            found = json.loads(uri).get("password")
        except (ValueError, AttributeError):
            return None
        return found if isinstance(found, str) else None
    try:
        password = urlsplit(uri).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    if _pattern is None and _secrets:
        # Longest first: a secret that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))
    return _pattern


def text(message: str) -> str:
    """`message` with every known secret, and any user:password@ in a URL, masked."""
    pattern = _compiled()
    if pattern is not None:
        message = pattern.sub(MASK, message)
    if "@" in message:
        message = _URL_CREDENTIALS.sub(rf"\1{MASK}@", message)
    return message


def value(data: T) -> T:
    """A copy of a JSON-like value (dicts, lists, strings) with every string masked."""
    if isinstance(data, str):
        return text(data)  # type: ignore[return-value]
    if isinstance(data, dict):
        return {text(k) if isinstance(k, str) else k: value(v) for k, v in data.items()}  # type: ignore[return-value]
    if isinstance(data, (list, tuple)):
        return type(data)(value(v) for v in data)  # type: ignore[return-value]
    return data


def dumps(data: object) -> str:
    """`json.dumps(value(data))`, without walking a large document that holds nothing to mask: every
    secret is registered in its JSON-escaped form too, so the serialized text shows any the walk would
    mask (and a URL's credentials too); only then is the document walked."""
    serialized = json.dumps(data)
    if text(serialized) == serialized:
        return serialized
    return json.dumps(value(data))


class MaskedStream(io.TextIOBase):
    """A text stream that masks secrets in whole lines before they reach the stream below.

    Lines are held until their newline (or a flush), so a secret written in two pieces is still
    seen whole; progress output that redraws a line flushes it, and is masked the same way."""

    def __init__(self, inner: io.TextIOBase):
        self.inner = inner
        self._pending = ""

    HELD = 64 << 10  # a line longer than this is let through in pieces, never one cut inside a secret

    def write(self, data: str) -> int:
        self._pending += data
        if "\n" in data:
            complete, _, self._pending = self._pending.rpartition("\n")
            self.inner.write(text(complete + "\n"))
        if len(self._pending) > self.HELD:
            self._release_long_line()
        return len(data)

    def _release_long_line(self) -> None:
        cut = len(self._pending) - max((len(s) for s in _secrets), default=0)
        pattern = _compiled()
        if pattern is not None:
            for match in pattern.finditer(self._pending):
                if match.start() < cut < match.end():
                    cut = match.end()
        self.inner.write(text(self._pending[:cut]))
        self._pending = self._pending[cut:]

    def flush(self) -> None:
        if self._pending:
            self.inner.write(text(self._pending))
            self._pending = ""
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def install() -> None:
    """Mask the caller's environment's secrets in everything this process prints from now on."""
    add_environment()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))
