"""Pure validators for everything the site accepts from clients.

No I/O and no web framework here, so the rules can be unit-tested (and fuzzed)
on their own.  Every rejection is an :class:`InputError` carrying the HTTP status
the app must answer with; the app turns it into a 4xx JSON error.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

MAX_TEXT_CHARS = 10_000
MAX_BODY_BYTES = 64 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Ids are BIGINT UNSIGNED.
MAX_ENTRY_ID = 2**64 - 1

# A GTID list as MariaDB prints it: domain-server-seqno[,...].  Bounded so a
# hostile cookie can neither blow up the regex nor the server's parser.
MAX_GTID_LEN = 512
# re.ASCII: \d must not match other scripts' digits; fullmatch() is used so a
# trailing newline (which "$" tolerates) is rejected too.
_GTID_RE = re.compile(r"^\d+-\d+-\d+(,\d+-\d+-\d+)*$", re.ASCII)
_U32 = 2**32 - 1
_U64 = 2**64 - 1

_ID_RE = re.compile(r"[0-9]{1,20}")
_LIMIT_RE = re.compile(r"[0-9]{1,4}")
_LENGTH_RE = re.compile(r"[0-9]+")


class InputError(Exception):
    """A client mistake; ``status`` is the 4xx code to answer with (plus any ``headers`` it needs)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# Idempotency-Key: what a client may use (a UUID, a ULID, "client:counter" ...), never anything that needs
# quoting in a header, a log line or SQL.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_FIELD = "idempotency_key"  # the same, as a hidden field of the HTML form
MAX_IDEMPOTENCY_KEY = 128
_IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def parse_idempotency_key(values: list[str]) -> str | None:
    """The request's idempotency key (given at most once, 1-128 of ``[A-Za-z0-9_.:-]``), or ``None``."""
    if not values:
        return None
    if len(values) > 1:
        raise InputError(400, f"{IDEMPOTENCY_KEY_HEADER} must be given once")
    if not _IDEMPOTENCY_KEY_RE.fullmatch(values[0]):
        raise InputError(
            400, f"{IDEMPOTENCY_KEY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} characters of A-Z a-z 0-9 _ . : -"
        )
    return values[0]


def parse_gtid(value: str | None) -> str | None:
    """Return ``value`` if it is a well-formed MariaDB GTID list, else ``None``.

    Used for the read-your-writes cookie: an invalid cookie is ignored rather than
    rejected, because it only ever makes reads *more* consistent.
    """
    if value is None or len(value) > MAX_GTID_LEN or not _GTID_RE.fullmatch(value):
        return None
    domains: set[int] = set()
    for gtid in value.split(","):
        domain, server, seqno = (int(part) for part in gtid.split("-"))
        # Out-of-range numbers make MASTER_GTID_WAIT raise instead of wait, and one
        # domain listed twice is rejected by the server too.
        if domain > _U32 or server > _U32 or seqno > _U64 or domain in domains:
            return None
        domains.add(domain)
    return value


def validate_text(value: Any) -> str:
    """Check the ``text`` of a new entry; return it unchanged if acceptable."""
    if value is None:
        raise InputError(422, "'text' is required")
    if not isinstance(value, str):
        raise InputError(422, "'text' must be a string")
    if not value.strip():
        raise InputError(422, "'text' must not be empty")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(422, f"'text' must be at most {MAX_TEXT_CHARS} characters")
    try:
        # JSON may smuggle in lone surrogates ("\ud800"); they cannot be stored
        # as utf8mb4 and would otherwise blow up in the driver as a 500.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(422, "'text' must be valid Unicode") from None
    return value


def parse_json_text(body: bytes) -> str:
    """Extract and validate ``text`` from a JSON request body."""
    try:
        decoded = body.decode("utf-8")
        payload = json.loads(decoded)
    except (UnicodeDecodeError, ValueError):
        raise InputError(400, "request body is not valid UTF-8 JSON") from None
    except RecursionError:
        # Deeply nested arrays exhaust the parser's stack; still just bad input.
        raise InputError(400, "request body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise InputError(422, "request body must be a JSON object")
    return validate_text(payload.get("text"))


def parse_form_text(body: bytes) -> str:
    """Extract and validate ``text`` from an ``application/x-www-form-urlencoded`` body."""
    return parse_form_entry(body)[0]


def parse_form_entry(body: bytes) -> tuple[str, str | None]:
    """``text`` and the optional ``idempotency_key`` field of the HTML form's body."""
    try:
        # errors="strict": percent-escapes that are not UTF-8 are bad input, not
        # something to silently turn into U+FFFD.  The field cap bounds the work.
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=32)
    except ValueError:  # includes UnicodeDecodeError and "too many fields"
        raise InputError(400, "request body is not a valid UTF-8 form") from None
    values = fields.get("text")
    if values is not None and len(values) != 1:
        raise InputError(422, "'text' must be given once")
    return validate_text(values[0] if values else None), parse_idempotency_key(fields.get(IDEMPOTENCY_KEY_FIELD, []))


def parse_entry_id(raw: str) -> int:
    """Parse an entry id from a URL; anything that cannot be an id is a 404."""
    if not _ID_RE.fullmatch(raw):
        raise InputError(404, "entry not found")
    value = int(raw)
    if not 1 <= value <= MAX_ENTRY_ID:
        raise InputError(404, "entry not found")
    return value


def parse_limit(raw: str | None) -> int:
    """Parse the ``limit`` query parameter (default 50, allowed 1..500)."""
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT_RE.fullmatch(raw):
        raise InputError(400, f"'limit' must be an integer between 1 and {MAX_LIMIT}")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise InputError(400, f"'limit' must be an integer between 1 and {MAX_LIMIT}")
    return value


def media_type(content_type: str | None) -> str:
    """Return the lower-cased media type of a Content-Type header, without parameters."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def check_content_length(raw: str | None, limit: int = MAX_BODY_BYTES) -> None:
    """Reject a declared body size above ``limit`` before reading a byte of it."""
    if raw is None:
        return
    raw = raw.strip()
    if not _LENGTH_RE.fullmatch(raw):
        raise InputError(400, "invalid Content-Length")
    # Compare lengths first: int() refuses absurdly long digit strings.
    if len(raw) > 18 or int(raw) > limit:
        raise InputError(413, f"request body must be at most {limit} bytes")
