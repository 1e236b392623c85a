"""Redaction of secrets in URIs: the one function applied wherever a URI can be printed.

Store URIs carry credentials (``http://user:PASSWORD@host``, ``postgresql://u:PASSWORD@h/db``,
``?api_key=KEY``, libpq's ``password=KEY``), and sinks hold API keys and tokens given apart
from the URI. Source URLs may be signed (``X-Amz-Signature=``, ``X-Goog-Signature=``, an
Azure SAS's ``sig=``), and storage options carry keys and tokens
(``storage_option_secrets`` in ``ingest._remote`` lists them for :func:`redact`). Every message, log line, report and repr that may show a URI goes through
:func:`redact`; a sink keeps the secret-bearing original only to connect.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "MIN_SECRET_LENGTH", "RedactingFormatter", "redact", "secrets_of"]

#: What a secret is replaced with.
MASK = "***"

#: Known secrets shorter than this are not masked wherever they occur (a 1-3 character
#: "secret" would garble every message: ``--api-key k`` would mask each ``k``); they are
#: still masked inside URIs and ``password=``-style parameters.
MIN_SECRET_LENGTH = 4

#: ``scheme://user:PASSWORD@``; the user name stays, the password goes.
_URL_PASSWORD = re.compile(r"(://[^:/@?#\s]*:)[^@/?#\s]*@")
#: Names of query-string and ``key=value`` parameters whose value is a secret.
_SECRET_NAMES = (
    r"password|passwd|pwd|api[_-]?key|apikey|token|access[_-]?token|auth[_-]?token|"
    r"secret|client[_-]?secret|sslpassword|"
    # signed URLs (S3 presigned, GCS signed, Azure SAS) and cloud credentials
    r"x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|"
    r"signature|sig|sas[_-]?token|account[_-]?key|session[_-]?token|credential|credentials|"
    r"connection[_-]?string|secret[_-]?access[_-]?key|aws[_-]?secret[_-]?access[_-]?key"
)
_KEYWORD_SECRET = re.compile(
    rf"(?<![A-Za-z0-9])((?:{_SECRET_NAMES})\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;#,)'\"]+)", re.IGNORECASE
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret replaced by ``***``.

    Args:
        text: a message, log line or URI.
        secrets: secrets known apart from the text (an API key, a token, the password of
            a URI as the driver may print it decoded); each occurrence is masked too, if it
            has at least :data:`MIN_SECRET_LENGTH` characters.

    Returns:
        ``text`` with URI passwords (``scheme://user:***@host``), secret parameters
        (``password=***``, ``api_key=***``, ``token=***``...) and the given ``secrets`` masked.
    """
    text = _KEYWORD_SECRET.sub(rf"\1{MASK}", _URL_PASSWORD.sub(rf"\1{MASK}@", text))
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secrets_of(uri: str | None) -> list[str]:
    """The secrets written in ``uri`` (URL password, secret query or ``key=value``
    parameters), raw and percent-decoded, so that :func:`redact` can mask them wherever a
    client library repeats them outside the URI."""
    if not uri:
        return []
    found: list[str] = []
    try:
        parts = urlsplit(uri)
        if parts.password:
            found.append(parts.password)
        found.extend(value for key, value in parse_qsl(parts.query) if _is_secret_name(key))
    except ValueError:  # not a URL (e.g. a libpq key=value string)
        pass
    for match in _KEYWORD_SECRET.finditer(uri):
        found.append(match.group(2).strip("'"))
    return sorted({s for value in found if value for s in (value, unquote(value))})


def _is_secret_name(name: str) -> bool:
    return re.fullmatch(_SECRET_NAMES, name, re.IGNORECASE) is not None


class RedactingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose every formatted line (message and traceback) goes
    through :func:`redact` with the given ``secrets``."""

    def __init__(self, fmt: str | None = None, secrets: Iterable[str | None] = ()) -> None:
        super().__init__(fmt)
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        return redact(super().format(record), self.secrets)
