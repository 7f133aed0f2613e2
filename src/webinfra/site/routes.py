"""HTTP handlers of the site: the HTML board, the JSON API and the health check.

Handlers validate input with :mod:`webinfra.site.validation` (raising
:class:`InputError`, which the app renders as a 4xx JSON error) and talk to the
database only through :class:`~webinfra.site.entries.EntryStore`.  Every
response that touched the database names the DB host in ``X-DB``: the server's
own name when ``identify_servers`` is on, else the endpoint's configured name.
"""

from __future__ import annotations

import secrets
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from webinfra.site.auth import (
    AUTHOR_COOKIE_MAX_AGE,
    GTID_COOKIE,
    Signer,
    author_cookie_name,
    authorize_delete,
)
from webinfra.site.config import SiteConfig
from webinfra.site.db import Served
from webinfra.site.entries import Created, EntryStore
from webinfra.site.validation import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_BODY_BYTES,
    MAX_TEXT_CHARS,
    InputError,
    check_content_length,
    media_type,
    parse_entry_id,
    parse_form_entry,
    parse_gtid,
    parse_idempotency_key,
    parse_json_text,
    parse_limit,
)

PAGE_ENTRIES = 50
#: On the answer to a POST whose Idempotency-Key was already stored: this is the first request's result.
REPLAYED_HEADER = "Idempotent-Replayed"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one shape of every error the site returns."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes.

    The declared Content-Length is checked up front, but the count while reading
    is what counts: chunked bodies have no Content-Length and a client may lie.
    """
    check_content_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(413, f"request body must be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _require_media_type(request: Request, expected: str) -> None:
    if media_type(request.headers.get("content-type")) != expected:
        raise InputError(415, f"Content-Type must be {expected}")


def _store(request: Request) -> EntryStore:
    store: EntryStore = request.app.state.store
    return store


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _client_gtid(request: Request) -> str | None:
    # A malformed, unsigned or forged cookie is ignored: it could only have made the read wait.
    return _signer(request).gtid_from_cookie(request.cookies.get(GTID_COOKIE))


def _db_headers(served: Served[Any]) -> dict[str, str]:
    return {"X-DB": served.db_host}


def _remember_write(request: Request, response: Response, served: Served[Any]) -> None:
    """Give the client the (signed) GTID of its write, so its next reads can wait for it."""
    gtid = parse_gtid(served.gtid)
    if gtid is not None:
        # Set by hand for the exact attribute spelling; a GTID and its MAC are cookie-safe.
        cookie = _signer(request).gtid_cookie(gtid)
        response.headers.append("set-cookie", f"{GTID_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax")


async def index(request: Request) -> Response:
    """The board: latest entries and a form to post one."""
    served = await _store(request).latest(PAGE_ENTRIES, gtid=_client_gtid(request))
    config: SiteConfig = request.app.state.config
    templates: Environment = request.app.state.templates
    html = templates.get_template("index.html").render(
        idempotency_key=secrets.token_urlsafe(16),
        site_name=config.site_name,
        host=config.host,
        version=config.version,
        db_endpoint=served.db_host,
        entries=served.value,
        max_chars=MAX_TEXT_CHARS,
    )
    return HTMLResponse(html, headers=_db_headers(served))


def _remember_author(request: Request, response: Response, entry_id: int) -> None:
    """The author's cookie for a new entry: sent back only with requests for that entry, it allows deleting it."""
    token = _signer(request).author_token(entry_id)
    response.headers.append(
        "set-cookie",
        f"{author_cookie_name(entry_id)}={token}; Path=/api/entries/{entry_id}; Max-Age={AUTHOR_COOKIE_MAX_AGE}; "
        "HttpOnly; SameSite=Strict",
    )


def _header_key(request: Request) -> str | None:
    return parse_idempotency_key(request.headers.getlist(IDEMPOTENCY_KEY_HEADER))


def _created_headers(served: Served[Created]) -> dict[str, str]:
    return {**_db_headers(served), **({REPLAYED_HEADER: "true"} if served.value.replayed else {})}


async def post_form(request: Request) -> Response:
    """The HTML form's target: store the entry, then back to the board (POST/redirect/GET).

    The form carries a fresh idempotency key per page view, so a double submit stores the entry once.
    """
    _require_media_type(request, "application/x-www-form-urlencoded")
    header_key = _header_key(request)
    text, form_key = parse_form_entry(await read_body(request))
    served = await _store(request).create(text, header_key or form_key)
    response = RedirectResponse("/", status_code=303, headers=_created_headers(served))
    _remember_write(request, response, served)
    _remember_author(request, response, served.value.entry.id)
    return response


async def list_entries(request: Request) -> Response:
    """``GET /api/entries?limit=N``: newest first."""
    limit = parse_limit(request.query_params.get("limit"))
    served = await _store(request).latest(limit, gtid=_client_gtid(request))
    return JSONResponse({"entries": [e.to_json() for e in served.value]}, headers=_db_headers(served))


async def get_entry(request: Request) -> Response:
    """``GET /api/entries/{id}``."""
    entry_id = parse_entry_id(request.path_params["entry_id"])
    served = await _store(request).get(entry_id, gtid=_client_gtid(request))
    if served.value is None:
        return error_response(404, "entry not found", _db_headers(served))
    return JSONResponse(served.value.to_json(), headers=_db_headers(served))


async def create_entry(request: Request) -> Response:
    """``POST /api/entries`` with ``{"text": ...}``, exactly once per ``Idempotency-Key`` if one is given.

    A retry with a stored key answers 201 with the first result (same id) and ``Idempotent-Replayed: true``.
    """
    _require_media_type(request, "application/json")
    key = _header_key(request)
    text = parse_json_text(await read_body(request))
    served = await _store(request).create(text, key)
    entry = served.value.entry
    headers = {**_created_headers(served), "Location": f"/api/entries/{entry.id}"}
    response = JSONResponse({**entry.to_json(), "gtid": served.gtid}, status_code=201, headers=headers)
    _remember_write(request, response, served)
    _remember_author(request, response, entry.id)
    return response


async def delete_entry(request: Request) -> Response:
    """``DELETE /api/entries/{id}``: for the entry's author (cookie) or the admin (bearer token)."""
    entry_id = parse_entry_id(request.path_params["entry_id"])
    authorize_delete(
        entry_id,
        signer=_signer(request),
        admin=request.app.state.admin,
        authorization=request.headers.get("authorization"),
        author_cookie=request.cookies.get(author_cookie_name(entry_id)),
    )
    served = await _store(request).delete(entry_id)
    if not served.value:
        # Nothing was written, so @@last_gtid is some older write of that pooled
        # session: no cookie.
        return error_response(404, "entry not found", _db_headers(served))
    response = Response(status_code=204, headers=_db_headers(served))
    _remember_write(request, response, served)
    return response


async def healthz(request: Request) -> Response:
    """Liveness for the load balancer; deliberately never touches the database."""
    config: SiteConfig = request.app.state.config
    return JSONResponse({"status": "ok", "host": config.host, "version": config.version})


async def entries_collection(request: Request) -> Response:
    """``/api/entries``: one route per path, so a 405 lists every allowed method."""
    return await (create_entry if request.method == "POST" else list_entries)(request)


async def entries_item(request: Request) -> Response:
    """``/api/entries/{id}``."""
    return await (delete_entry if request.method == "DELETE" else get_entry)(request)


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/entries", post_form, methods=["POST"]),
    Route("/api/entries", entries_collection, methods=["GET", "POST"]),
    Route("/api/entries/{entry_id}", entries_item, methods=["GET", "DELETE"]),
    Route("/healthz", healthz, methods=["GET"]),
]
