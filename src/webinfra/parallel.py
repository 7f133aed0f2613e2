"""Running independent steps side by side: probing or starting one thing on each of many hosts.

Most of what `up` and `status` do per host is waiting (a subprocess in the host's namespace, a probe over
a socket, a daemon getting ready), so a small pool of threads turns a sum of waits into roughly the longest
one. `map_ordered` runs every item even when one fails, then raises the first failure in item order, so a
caller sees the same error whatever the timing; `serialized` makes a callback safe to call from the pool.
`run_graph` runs named steps as soon as the steps they wait for are done (the phases of `up` and `down`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import ParamSpec, TypeVar

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

# Enough to overlap the waits of a 40-host cluster, few enough not to swamp a 2-core machine with
# processes that all want the CPU at once (each daemon start costs CPU too).
MAX_WORKERS = 8


def map_ordered(fn: Callable[[T], R], items: Iterable[T], *, max_workers: int = MAX_WORKERS) -> list[R]:
    """`[fn(item) for item in items]`, on at most `max_workers` threads at a time; results in item order.
    Every item runs; if any raised, the first failure (in item order) is raised after all are done."""
    todo = list(items)
    if max_workers < 1:
        raise ValueError(f"max_workers = {max_workers}: must be at least 1")
    if len(todo) <= 1 or max_workers == 1:
        results: list[R] = []
        errors: list[BaseException] = []
        for item in todo:
            try:
                results.append(fn(item))
            except Exception as exc:  # run the rest, as the pool does
                errors.append(exc)
        if errors:
            raise errors[0]
        return results
    with ThreadPoolExecutor(max_workers=min(max_workers, len(todo)), thread_name_prefix="webinfra") as pool:
        futures = [pool.submit(fn, item) for item in todo]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


def serialized(fn: Callable[P, None]) -> Callable[P, None]:
    """`fn` behind a lock: progress lines from the pool come out whole, one at a time."""
    lock = threading.Lock()

    def locked(*args: P.args, **kwargs: P.kwargs) -> None:
        with lock:
            fn(*args, **kwargs)

    return locked


def run_graph(waits_for: dict[str, tuple[str, ...]], fn: Callable[[str], None]) -> list[str]:
    """Run `fn(name)` for every node of `waits_for` (name -> the names it waits for), each on its own thread
    as soon as all it waits for have finished. After a failure nothing new starts; the ones running finish,
    then the first failure (in `waits_for` order) is raised. Returns the names in the order they finished."""
    unknown = {dep for deps in waits_for.values() for dep in deps} - set(waits_for)
    if unknown:
        raise ValueError(f"waits for unknown steps: {', '.join(sorted(unknown))}")
    done: list[str] = []
    running: dict[Future[None], str] = {}
    errors: dict[str, BaseException] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(waits_for)), thread_name_prefix="webinfra-graph") as pool:
        while True:
            if not errors:
                started = set(running.values()) | set(done)
                for name, deps in waits_for.items():
                    if name not in started and all(d in done for d in deps):
                        running[pool.submit(fn, name)] = name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    errors[name] = error
                else:
                    done.append(name)
    if errors:
        raise errors[next(n for n in waits_for if n in errors)]
    if len(done) != len(waits_for):
        raise ValueError(f"steps waiting in a cycle: {', '.join(n for n in waits_for if n not in done)}")
    return done
