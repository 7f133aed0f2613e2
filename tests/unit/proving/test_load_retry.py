"""The load client's one retry of an idempotent request whose connection was refused or reset (as a browser
does), on a fake transport: which requests are retried, and that the retry stays within the timeout."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from webinfra.proving.loadgen import run_load_async

REAL_CLIENT = httpx.AsyncClient


def _flaky(
    failures: int, error: type[httpx.TransportError] = httpx.ConnectError
) -> tuple[httpx.MockTransport, list[str]]:
    """A transport whose first `failures` requests fail with `error`; then 200 (GET) or 201 (POST)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.headers.get('idempotency-key', '-')}")
        if len(seen) <= failures:
            raise error("connection refused", request=request)
        if request.method == "POST":
            return httpx.Response(201, json={"id": len(seen)})
        return httpx.Response(200, json=[])

    return httpx.MockTransport(handle), seen


def _run(transport: httpx.MockTransport, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> list[object]:
    def client(**options: object) -> httpx.AsyncClient:
        return REAL_CLIENT(transport=transport, **{k: v for k, v in options.items() if k not in ("limits", "verify")})  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncClient", client)
    result = asyncio.run(run_load_async("http://site.test", max_requests=1, concurrency=1, **kwargs))  # type: ignore[arg-type]
    return list(result.samples)


def test_a_refused_get_is_sent_once_more_and_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = _flaky(1)
    started = time.monotonic()
    (sample,) = _run(transport, monkeypatch, retry_after=0.05, timeout=2.0)
    assert seen == ["GET -", "GET -"]
    assert sample.ok and sample.status == 200  # type: ignore[attr-defined]
    assert sample.latency >= 0.05 and time.monotonic() - started < 2.0  # type: ignore[attr-defined]
    assert sample.retried and sample.started >= 0.05  # type: ignore[attr-defined]  # placed at its retry


def test_a_reset_keyed_post_is_retried_with_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = _flaky(1, httpx.ReadError)
    (sample,) = _run(transport, monkeypatch, retry_after=0.01, write_ratio=1.0, keyed_ratio=1.0)
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0] != "POST -"
    assert sample.ok and sample.entry_id == 2  # type: ignore[attr-defined]


def test_an_unkeyed_post_is_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = _flaky(1)
    (sample,) = _run(transport, monkeypatch, retry_after=0.01, write_ratio=1.0)
    assert seen == ["POST -"] and sample.status == 0 and sample.error == "ConnectError"  # type: ignore[attr-defined]


def test_only_one_retry_and_none_when_disabled_or_out_of_time(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = _flaky(5)
    (sample,) = _run(transport, monkeypatch, retry_after=0.01)
    assert len(seen) == 2 and sample.status == 0  # type: ignore[attr-defined]
    transport, seen = _flaky(5)
    _run(transport, monkeypatch, retry_after=None)
    assert len(seen) == 1
    transport, seen = _flaky(5)
    _run(transport, monkeypatch, retry_after=0.5, timeout=0.5)  # no time left for a retry after the pause
    assert len(seen) == 1


def test_a_timeout_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, seen = _flaky(1, httpx.ReadTimeout)
    (sample,) = _run(transport, monkeypatch, retry_after=0.01)
    assert seen == ["GET -"] and sample.error == "ReadTimeout"  # type: ignore[attr-defined]
