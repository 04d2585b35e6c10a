"""Secrets masked in what airbuild prints and writes (builder.masking), in every form they take."""

from __future__ import annotations

import io
import json

from builder.common import masking


def fresh(monkeypatch) -> None:
    monkeypatch.setattr(masking, "_secrets", set())
    monkeypatch.setattr(masking, "_pattern", None)


def test_sensitive_names_connection_passwords_and_registered_values_are_masked(monkeypatch):
    fresh(monkeypatch)
    masking.add_environment({"DEPLOY_TOKEN": "tok-123456", "AWS_SECRET_ACCESS_KEY": 'se"cr\\et',
                             "AIRFLOW_CONN_DB": "postgres://u:p%40ss-word@db:5432/x",
                             "AIRFLOW_CONN_JSON": json.dumps({"conn_type": "http", "password": "json-pass-1"}),
                             "PLAIN": "not-a-secret", "MY_KEY": "no"})
    masking.add("registered-value")
    message = ('tok-123456 se"cr\\et p@ss-word p%40ss-word json-pass-1 registered-value not-a-secret no '
               'https://user:pw@host/simple')
    assert masking.text(message) == "*** *** *** *** *** *** not-a-secret no https://***@host/simple"
    # Inside JSON the secret is escaped: the escaped form is masked too.
    assert "se" not in masking.text(json.dumps({"error": 'se"cr\\et'}))
    assert masking.value({"a": ["tok-123456", {"b": "x tok-123456"}], "n": 3}) == {"a": ["***", {"b": "x ***"}], "n": 3}


def test_the_stream_masks_a_secret_written_in_pieces_and_bounds_a_long_line(monkeypatch):
    fresh(monkeypatch)
    masking.add("piecewise-secret")
    out = io.StringIO()
    stream = masking.MaskedStream(out)
    stream.write("before piece")
    stream.write("wise-secret after\nnext ")
    assert out.getvalue() == "before *** after\n"
    stream.flush()
    assert out.getvalue().endswith("next ")
    # A line with no newline is not held whole: it is let through in pieces, still masked.
    out.truncate(0), out.seek(0)
    stream.write("x" * (200 << 10) + "piecewise-")
    stream.write("secret" + "y" * (100 << 10))
    assert len(stream._pending) <= masking.MaskedStream.HELD + len("piecewise-secret")
    stream.flush()
    assert "piecewise" not in out.getvalue() and out.getvalue().count("***") == 1


def test_short_values_are_not_masked(monkeypatch):
    fresh(monkeypatch)
    masking.add_environment({"DEBUG_KEY": "1", "A_TOKEN": "yes"})
    assert masking.text("1 yes") == "1 yes"


def test_a_document_is_dumped_masked_and_walked_only_when_something_shows(monkeypatch):
    fresh(monkeypatch)
    masking.add('se"cr\\et-1')
    document = {"files": [{"stdout": 'printed se"cr\\et-1', "n": 1}, {"url": "https://user:pw@host/x"}], "ok": True}
    dumped = json.loads(masking.dumps(document))
    assert dumped == {"files": [{"stdout": "printed ***", "n": 1}, {"url": "https://***@host/x"}], "ok": True}
    clean = {"files": [{"stdout": "nothing to hide", "n": 2}], "ok": False}
    walked = []
    monkeypatch.setattr(masking, "value", lambda data: walked.append(data) or data)
    assert masking.dumps(clean) == json.dumps(clean) and walked == [], "no secret shows: not walked"
