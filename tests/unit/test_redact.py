"""redact / secrets_of: the one redaction of secrets in URIs, messages and log lines."""

from __future__ import annotations

import logging

import pytest

from e5_integrations._redact import RedactingFormatter, redact, secrets_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://admin:s3cret@127.0.0.1:1", "http://admin:***@127.0.0.1:1"),
        (
            "cannot reach Chroma at https://u:p%40ss@h:8000 (x)",
            "cannot reach Chroma at https://u:***@h:8000 (x)",
        ),
        ("postgresql://bob@db/x", "postgresql://bob@db/x"),
        ("http://h:6333/?api_key=K3Y&x=1", "http://h:6333/?api_key=***&x=1"),
        ("http://h/?apikey=K3Y", "http://h/?apikey=***"),
        ("http://h/?token=T0K&access_token=A", "http://h/?token=***&access_token=***"),
        ("host=db password='a b' user=bob", "host=db password=*** user=bob"),
        ("host=db PASSWORD = pw", "host=db PASSWORD = ***"),
        ("no secret here: tokens=3 keyword", "no secret here: tokens=3 keyword"),
    ],
)
def test_redact_masks_passwords_and_secret_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_secrets_are_masked_anywhere() -> None:
    assert redact("login as bob with s3cret failed", ["s3cret", None, ""]) == "login as bob with *** failed"
    # too short to mask everywhere (it would garble the message), still masked in a URI
    assert redact("--api-key k is for http://u:k@h", ["k"]) == "--api-key k is for http://u:***@h"


def test_secrets_of_finds_raw_and_decoded_forms() -> None:
    assert secrets_of("postgresql://bob:p%40ss@db/x?sslmode=require") == ["p%40ss", "p@ss"]
    assert secrets_of("http://h:6333?api_key=K3Y&timeout=3") == ["K3Y"]
    assert secrets_of("host=db password='a b'") == ["a b"]
    assert secrets_of("./store/chroma") == [] and secrets_of(None) == []


def test_formatter_redacts_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", secrets=["T0PS3CRET"])
    try:
        raise ConnectionError("refused by http://a:pw@h with key T0PS3CRET")
    except ConnectionError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "at %s", ("http://a:pw@h",), sys.exc_info()
        )
    line = formatter.format(record)
    assert "pw@" not in line and "T0PS3CRET" not in line
    assert line.count("a:***@h") >= 2  # the message and the exception (and its source line)
