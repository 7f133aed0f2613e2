"""The site's credentials: signed cookies and the admin token (pure; no I/O but reading the secrets once).

* ``wi_gtid`` (read-your-writes): ``<gtid>.<mac>``.  Unsigned or forged values are ignored, so a client can
  no longer name a GTID of its choice and make a replica's connection wait for it.
* ``wi_own_<id>`` (authorship): ``<mac of the entry id>``, set on create with ``Path=/api/entries/<id>``, so
  the browser sends it only with requests for that entry.  It lets its holder delete the entry.
* ``Authorization: Bearer <admin token>`` may delete any entry.

The MAC is HMAC-SHA256 under the cluster's signing key, over a purpose label and the value, so a cookie of
one kind can never pass for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets

from webinfra.site.config import SiteConfig, read_secret_file
from webinfra.site.validation import InputError, parse_gtid

log = logging.getLogger(__name__)

GTID_COOKIE = "wi_gtid"
AUTHOR_COOKIE_PREFIX = "wi_own_"
AUTHOR_COOKIE_MAX_AGE = 90 * 24 * 3600
_MAC_LEN = 43  # unpadded base64url of 32 bytes
_MAC_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# A bearer token as RFC 6750 spells it (token68), bounded.
_BEARER_RE = re.compile(r"Bearer +([A-Za-z0-9._~+/-]{1,256}=*)", re.IGNORECASE)


class Signer:
    """Signs and checks the site's cookies with one key shared by every app server of the cluster."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_config(cls, config: SiteConfig) -> Signer:
        if config.signing_key_file is None:
            # Still safe, only less useful: cookies set by this process hold on it alone.
            log.warning("no signing_key_file configured: signing cookies with a key of this process only")
            return cls(secrets.token_bytes(32))
        return cls(read_secret_file(config.signing_key_file).encode("utf-8"))

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def _valid(self, purpose: str, value: str, mac: str) -> bool:
        return bool(_MAC_RE.fullmatch(mac)) and hmac.compare_digest(self._mac(purpose, value), mac)

    def gtid_cookie(self, gtid: str) -> str:
        """The read-your-writes cookie's value for ``gtid`` (a validated GTID list)."""
        return f"{gtid}.{self._mac('gtid', gtid)}"

    def gtid_from_cookie(self, cookie: str | None) -> str | None:
        """The GTID a genuine cookie carries; ``None`` for a missing, malformed, unsigned or forged one."""
        if not cookie or "." not in cookie:
            return None
        gtid, mac = cookie.rsplit(".", 1)
        if parse_gtid(gtid) is None or not self._valid("gtid", gtid, mac):
            return None
        return gtid

    def author_token(self, entry_id: int) -> str:
        """The author cookie's value for ``entry_id``."""
        return self._mac("author", str(entry_id))

    def is_author(self, entry_id: int, token: str | None) -> bool:
        return token is not None and self._valid("author", str(entry_id), token)


def author_cookie_name(entry_id: int) -> str:
    return f"{AUTHOR_COOKIE_PREFIX}{entry_id}"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` if there is none or it is malformed."""
    if not authorization:
        return None
    match = _BEARER_RE.fullmatch(authorization.strip())
    return match.group(1) if match else None


class AdminToken:
    """The cluster's admin token (``None``: no admin access at all)."""

    def __init__(self, token: str | None) -> None:
        self._token = token or None

    @classmethod
    def from_config(cls, config: SiteConfig) -> AdminToken:
        return cls(read_secret_file(config.admin_token_file) if config.admin_token_file else None)

    def matches(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(self._token.encode(), candidate.encode())


def authorize_delete(
    entry_id: int, *, signer: Signer, admin: AdminToken, authorization: str | None, author_cookie: str | None
) -> None:
    """Allow deleting ``entry_id`` to its author (signed cookie) or the admin (bearer token).

    Raises :class:`InputError`: 401 when no credential came at all, 403 when the one given does not fit.
    Checked before the database is asked, so the answer says nothing about whether the entry exists.
    """
    if authorization is not None:
        token = bearer_token(authorization)
        if token is not None and admin.matches(token):
            return
        if not signer.is_author(entry_id, author_cookie):
            raise InputError(403, "not allowed to delete this entry")
        return
    if author_cookie is None:
        raise InputError(
            401, "deleting an entry needs its author's cookie or an admin token", {"WWW-Authenticate": "Bearer"}
        )
    if not signer.is_author(entry_id, author_cookie):
        raise InputError(403, "not allowed to delete this entry")
