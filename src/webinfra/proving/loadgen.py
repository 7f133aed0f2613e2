"""A bounded HTTP load generator (asyncio + httpx) for tests, benchmarks and fault scenarios.

It only ever targets the URL it is given (the cluster's own hosts or loopback), stops by itself after
`duration` seconds or `max_requests` requests, and records every request: when, what, status, latency,
which server answered, and for acknowledged writes the id the site returned (so a test can later check
that every acknowledged write is still readable).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Sample:
    started: float  # seconds since the run began
    method: str
    status: int  # 0 when no HTTP answer (connection error, timeout)
    latency: float
    served_by: str = ""
    entry_id: int | None = None
    error: str = ""
    keyed: bool = False  # a POST sent with an Idempotency-Key (exactly-once: HAProxy may retry it)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    @property
    def failed(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    @property
    def acked_writes(self) -> list[int]:
        return [s.entry_id for s in self.samples if s.method == "POST" and s.ok and s.entry_id is not None]

    def rate(self) -> float:
        return len(self.samples) / self.duration if self.duration else 0.0

    def percentile(self, p: float) -> float:
        lat = sorted(s.latency for s in self.ok)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

    def median_latency(self) -> float:
        return statistics.median(s.latency for s in self.ok) if self.ok else float("nan")

    def served_by_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.ok:
            out[s.served_by] = out.get(s.served_by, 0) + 1
        return out


async def run_load_async(
    url: str,
    *,
    duration: float = 5.0,
    max_requests: int = 100_000,
    concurrency: int = 8,
    write_ratio: float = 0.0,
    read_path: str = "/api/entries?limit=10",
    host_header: str | None = None,
    timeout: float = 5.0,
    seed: int = 1,
    stop: threading.Event | None = None,
    result: LoadResult | None = None,
    verify: ssl.SSLContext | str | bool = True,  # https: a context or CA file trusting the cluster's CA
    rate: float | None = None,  # open loop: this many requests/s in all, each worker on its own staggered
    # schedule (a worker whose request hangs skips its slot), so request counts measure time: give enough
    # concurrency (rate x timeout) that an outage of hanging requests does not thin the schedule
    keyed_ratio: float = 0.0,  # share of the POSTs sent with an Idempotency-Key (unique per request)
) -> LoadResult:
    """Send GETs (and POSTs with probability `write_ratio`) to `url` until `duration` or `max_requests`."""
    result = result if result is not None else LoadResult()
    rng = random.Random(seed)
    run_id = f"{random.getrandbits(48):012x}"  # keys never repeat across runs on one cluster
    counter = itertools.count()
    t0 = time.monotonic()
    deadline = t0 + duration
    headers = {"Host": host_header} if host_header else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    interval = concurrency / rate if rate else 0.0

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        next_at = t0 + index * interval / concurrency
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            if interval:
                if next_at > time.monotonic():
                    await asyncio.sleep(min(0.25, next_at - time.monotonic()))
                    continue  # check the deadline and the stop flag again
                next_at = max(next_at + interval, time.monotonic())
            n = next(counter)
            if n >= max_requests:
                return
            is_write = rng.random() < write_ratio
            keyed = is_write and keyed_ratio > 0 and rng.random() < keyed_ratio
            start = time.monotonic()
            try:
                if is_write:
                    key = {"Idempotency-Key": f"load-{run_id}-{n}"} if keyed else {}
                    resp = await client.post("/api/entries", json={"text": f"load {run_id} {n}"}, headers=key)
                else:
                    resp = await client.get(read_path)
                entry_id = None
                if is_write and resp.status_code == 201:
                    entry_id = int(resp.json()["id"])
                sample = Sample(
                    start - t0,
                    "POST" if is_write else "GET",
                    resp.status_code,
                    time.monotonic() - start,
                    resp.headers.get("x-served-by", ""),
                    entry_id,
                    keyed=keyed,
                )
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                sample = Sample(
                    start - t0,
                    "POST" if is_write else "GET",
                    0,
                    time.monotonic() - start,
                    error=exc.__class__.__name__,
                    keyed=keyed,
                )
            result.samples.append(sample)

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout, limits=limits, verify=verify
    ) as client:
        await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
    result.duration = time.monotonic() - t0
    return result


def run_load(url: str, **kwargs: object) -> LoadResult:
    # kwargs are run_load_async's keyword options, passed through unchecked (here and in BackgroundLoad).
    return asyncio.run(run_load_async(url, **kwargs))  # type: ignore[arg-type]


class BackgroundLoad:
    """Run a load in a thread while a test injects a fault:

    with BackgroundLoad(url, duration=30) as load:
        ...inject, wait for recovery...
    load.result.failed  # the load stops at block exit (or at its own deadline)
    """

    def __init__(self, url: str, **kwargs: object) -> None:
        self.url = url
        self.kwargs = kwargs
        self.kwargs.setdefault("duration", 30.0)
        self._stop = threading.Event()
        self.started_at = time.monotonic()  # reset when the thread starts; sample times count from there
        self._result = LoadResult()  # filled in while the load runs
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.started_at = time.monotonic()
        asyncio.run(run_load_async(self.url, stop=self._stop, result=self._result, **self.kwargs))  # type: ignore[arg-type]
        self._done = True

    @property
    def result(self) -> LoadResult:
        assert self._done, "load still running"
        return self._result

    def samples_so_far(self) -> int:
        return len(self._result.samples)

    def snapshot(self) -> list[Sample]:
        """The requests recorded so far (a copy; the load goes on)."""
        return list(self._result.samples)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
