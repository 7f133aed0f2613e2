"""Each server's pyinfra work in a process of its own, so the servers' SSH round trips overlap.

webinfra drives pyinfra's API without gevent's monkey-patching (the emulated runtime's threads enter network
namespaces with setns, which a patched `threading` would turn into greenlets sharing one OS thread), so
paramiko blocks the whole process on every fact and command: one State holding every server gathers their
facts one host after another. A forked process per server holds a State of that server alone; the processes
run side by side and send back a small picklable result. What spans servers (the firewall's management
addresses, secrets, the plan) is decided in the parent before the fork; what follows (the DB bootstrap, the
agents, the VIP) runs in the parent after.

`fork`, not `spawn`: the work is a closure over the plan, copied into the child with the parent's memory, and
no interpreter starts."""

from __future__ import annotations

import multiprocessing
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One server's result, or the one line saying why there is none."""

    host: str
    value: T | None = None
    error: str = ""


def _child(host: str, work: Callable[[str], T], conn: Connection) -> None:
    import gevent

    gevent.reinit()  # the parent's hub, copied by fork, must not be used as is (gevent's rule after fork)
    try:
        outcome: Outcome[T] = Outcome(host, value=work(host))
    except Exception as exc:  # said in one line by the parent; the traceback only where nothing else says why
        detail = " ".join(str(exc).split())[:300] or "".join(traceback.format_exception_only(exc)).strip()
        outcome = Outcome(host, error=detail)
    try:
        conn.send(outcome)
    finally:
        conn.close()


def each_host(hosts: Iterable[str], work: Callable[[str], T]) -> list[Outcome[T]]:
    """`work(host)` for every host at once, each in a forked process; the outcomes in the hosts' order. A
    process that dies without a result (killed, out of memory) is an outcome with an error, never a hang."""
    context = multiprocessing.get_context("fork")
    # A child flushes its copy of the standard streams when it ends: what the parent had buffered would be
    # printed once more per child.
    sys.stdout.flush()
    sys.stderr.flush()
    running: list[tuple[str, multiprocessing.process.BaseProcess, Connection]] = []
    for host in hosts:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(host, work, sender), name=f"webinfra-{host}", daemon=True)
        process.start()
        sender.close()  # the child's end: EOF here once the child is gone
        running.append((host, process, receiver))
    outcomes = []
    for host, child, receiver in running:
        try:
            outcome: Outcome[T] = receiver.recv()
        except EOFError:
            child.join(5)
            outcome = Outcome(host, error=f"its process ended without a result (exit code {child.exitcode})")
        finally:
            receiver.close()
        child.join()
        outcomes.append(outcome)
    return outcomes


def values(outcomes: list[Outcome[T]], error: Callable[[str], Exception]) -> dict[str, T]:
    """Each host's value; `error(one line per failed host, joined)` raised when any failed."""
    failed = [f"{o.host}: {o.error}" for o in outcomes if o.error]
    if failed:
        raise error("; ".join(failed))
    return {o.host: o.value for o in outcomes if o.value is not None}
