"""The nemesis's writers: several clients POSTing through the site the whole time, keyed and unkeyed.

Each writer sends one write at a time, paced, every one with a unique text (`nem-<run> w<writer> s<seq>`),
so the rows alone say which writes were applied and how often. A keyed write carries an `Idempotency-Key`
and, after an ambiguous failure (no answer, a timeout, a 5xx), is sent again with the same key until it is
answered or its retry budget runs out — what a careful client does, and what exactly-once is for. An
unkeyed write is sent once: after an ambiguous failure its outcome is unknown. A 4xx means "not applied".

Bounded: the writers stop when told to or at `duration`, whichever comes first, and only ever talk to the
site's own address.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx

from webinfra.proving.chaos.nemesis_check import Outcome, WriteOp


@dataclass(frozen=True)
class WriterSettings:
    writers: int = 4
    rate: float = 16.0  # writes started per second, all writers together
    keyed_share: float = 0.5
    request_timeout: float = 3.0
    retry_budget: float = 30.0  # a keyed write is retried with its key for at most this long
    retry_pause: float = 0.3


@dataclass
class WriterLog:
    ops: list[WriteOp] = field(default_factory=list)
    attempts: list[tuple[float, bool]] = field(default_factory=list)  # (seconds since start, answered 201)


def _ambiguous(status: int) -> bool:
    """No answer or a 5xx: the write may or may not have been applied."""
    return status == 0 or status >= 500


class Writers:
    """Run the writers in a thread: `with Writers(url, run_id, …) as w: …; w.log.ops`."""

    def __init__(
        self,
        url: str,
        run_id: str,
        *,
        settings: WriterSettings = WriterSettings(),
        verify: ssl.SSLContext | bool = True,
        duration: float = 3600.0,
        seed: int = 1,
    ) -> None:
        self.url, self.run_id, self.settings, self.verify = url, run_id, settings, verify
        self.duration, self.seed = duration, seed
        self.log = WriterLog()
        self.started_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nemesis-writers")

    def __enter__(self) -> Writers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop starting writes; writes in flight finish (a keyed one within its retry budget)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        self.started_at = time.monotonic()
        asyncio.run(self._main())

    async def _main(self) -> None:
        s = self.settings
        limits = httpx.Limits(max_connections=s.writers * 2, max_keepalive_connections=s.writers)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=s.request_timeout, limits=limits, verify=self.verify
        ) as client:
            await asyncio.gather(*(self._writer(client, w) for w in range(s.writers)))

    async def _writer(self, client: httpx.AsyncClient, writer: int) -> None:
        s = self.settings
        rng = random.Random(self.seed * 1000 + writer)
        interval = s.writers / s.rate
        next_at = self.started_at + writer * interval / s.writers
        deadline = self.started_at + self.duration
        seq = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if next_at > time.monotonic():
                await asyncio.sleep(min(0.25, next_at - time.monotonic()))
                continue
            next_at = max(next_at + interval, time.monotonic())
            seq += 1
            text = f"nem-{self.run_id} w{writer} s{seq}"
            key = f"nem-{self.run_id}-w{writer}-s{seq}" if rng.random() < s.keyed_share else None
            self.log.ops.append(await self._one(client, writer, seq, text, key))

    async def _one(self, client: httpx.AsyncClient, writer: int, seq: int, text: str, key: str | None) -> WriteOp:
        s = self.settings
        started = time.monotonic()
        headers = {"Idempotency-Key": key} if key else {}
        attempts, status, error, entry_id = 0, 0, "", None
        while True:
            attempts += 1
            t = time.monotonic()
            try:
                resp = await client.post("/api/entries", json={"text": text}, headers=headers)
                status, error = resp.status_code, "" if resp.status_code < 400 else resp.text[:120]
                if status == 201:
                    entry_id = int(resp.json()["id"])
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                status, error = 0, exc.__class__.__name__
            self.log.attempts.append((t - self.started_at, status == 201))
            retry = key is not None and _ambiguous(status) and time.monotonic() - started < s.retry_budget
            if not retry:
                break
            await asyncio.sleep(s.retry_pause)
        outcome: Outcome = "acked" if status == 201 else "unknown" if _ambiguous(status) else "failed"
        return WriteOp(
            writer,
            seq,
            text,
            key,
            outcome,
            entry_id,
            attempts,
            round(started - self.started_at, 3),
            round(time.monotonic() - self.started_at, 3),
            error,
        )
