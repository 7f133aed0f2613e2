"""webinfra's watcher: records the state changes webinfra *sees* as events, and exports a few gauges.

Faults, weights and switchovers are recorded by the commands that cause them, and the DB agents record
their own decisions. What nobody causes on purpose (a backend failing its health checks, the VIP moving,
a new primary, a daemon dying) only shows as a difference between two looks at the cluster:

    look(cluster)          -> View   one light look: the serving LB's backend states (runtime API), who
                                     holds the VIP (a bind test in each LB's namespace), the writable primary
                                     (HA: the agents' /primary), which services run (PID files, no probes)
    advance(previous, now) -> (events, view)   pure: what changed, as (kind, host, detail) events

Where it runs: as the `monitor` service on the monitoring host (`python -m webinfra.observe.monitor`),
started by `up` and supervised by that host's hostd like any daemon, so events are recorded whenever the
cluster runs, not only while someone watches a dashboard, and exactly once (one watcher per cluster).
Prometheus scrapes its /metrics (`webinfra_vip_moves_total`, `webinfra_primary_changes_total`,
`webinfra_events_total`, `webinfra_vip_holder`, `webinfra_cert_not_after_seconds`) for the VipMoved,
FailoverHappened and CertificateExpiringSoon rules. It looks at the other hosts the way `webinfra status`
does (their namespaces, their HAProxy's unix socket), which an emulated cluster allows. On servers it runs on
the monitoring server with `--topology` (the file the plan ships there) and looks over the network instead
(observe/netlook.py), recording into that server's /var/lib/webinfra/events.jsonl. A topology without a
monitoring host has no watcher service: then `webinfra dashboard` and `status --watch` run the same
`Watcher` while they run (`recorder_lock` makes sure only one of them records).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from webinfra.control import events, hastate
from webinfra.control.cluster import Cluster
from webinfra.daemons import haproxy
from webinfra.model import Role, Topology
from webinfra.services import supervisor
from webinfra.state import Layout

log = logging.getLogger("webinfra.monitor")

Event = tuple[str, str, str]  # (kind, host, detail)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class View:
    """One look at the cluster. `vip_holder`/`primary` are None when nobody (or nobody known) holds them."""

    backends: Mapping[str, str] = field(default_factory=dict)  # web host -> up/down/maint/drain/unknown
    vip_holder: str | None = None
    primary: str | None = None
    services: Mapping[str, bool] = field(default_factory=dict)  # "host/service" -> running


def advance(previous: View | None, now: View) -> tuple[list[Event], View]:
    """Events between two looks, and the view to compare the next look with. Pure.

    The first look is the baseline (no events). A backend whose state is unknown (no LB's runtime API
    answered) keeps its last known state, so a change is reported once, when it is seen, not twice.
    """
    if previous is None:
        return [], now
    out: list[Event] = []
    backends = dict(now.backends)
    for name, state in now.backends.items():
        before = previous.backends.get(name, UNKNOWN)
        if state == UNKNOWN:
            backends[name] = before
            continue
        if before in (UNKNOWN, state):
            continue
        kind = {"down": "backend_down", "up": "backend_up"}.get(state, f"backend_{state}")
        out.append((kind, name, f"{before} -> {state}"))
    if now.vip_holder != previous.vip_holder:
        holder = now.vip_holder or previous.vip_holder or ""
        out.append(("vip_moved", holder, f"{previous.vip_holder or 'nobody'} -> {now.vip_holder or 'nobody'}"))
    primary = now.primary
    if primary is None:
        primary = previous.primary  # between two primaries (or a DB node not answering): the last one known
    elif previous.primary is not None and primary != previous.primary:
        out.append(("primary_changed", primary, f"{previous.primary} -> {primary}"))
    for key, running in now.services.items():
        was = previous.services.get(key)
        if was is None or was == running:
            continue
        host, _, service = key.partition("/")
        out.append(("service_started" if running else "service_stopped", host, service))
    return out, replace(now, backends=backends, primary=primary)


def vip_moves(event: Event) -> bool:
    """A move of the VIP to a load balancer (not the VIP being lost)."""
    return event[0] == "vip_moved" and not event[2].endswith("-> nobody")


# ---- looking (I/O) ----


def backend_state(status: str) -> str:
    s = status.upper()
    for word, state in (("MAINT", "maint"), ("DRAIN", "drain"), ("NOLB", "drain"), ("DOWN", "down"), ("UP", "up")):
        if s.startswith(word):
            return state
    return s.lower() or UNKNOWN


def holds_address(cluster: Cluster, host: str, address: str) -> bool:
    """Whether `address` is configured in `host` (binding to a non-local address fails)."""

    try:
        return cluster.hosts[host].holds_address(address)
    except Exception:  # the host is gone: it holds nothing
        return False


def vip_holder(cluster: Cluster) -> str | None:
    vip = cluster.topology.vip
    if vip is None:
        return None
    holders = [lb.name for lb in cluster.topology.with_role(Role.LB) if holds_address(cluster, lb.name, str(vip))]
    return ",".join(holders) or None


def look(cluster: Cluster) -> View:
    topo = cluster.topology
    holder = vip_holder(cluster)
    backends = {w.name: UNKNOWN for w in topo.with_role(Role.WEB)}
    for lb in sorted(topo.with_role(Role.LB), key=lambda h: h.name != holder):
        try:
            stats = haproxy.runtime_for(cluster.hosts[lb.name], cluster.plan.host(lb.name)).servers()
        except haproxy.RuntimeApiError:
            continue
        backends.update({s.name: backend_state(s.status) for s in stats if s.backend == "site"})
        break
    if topo.ha:
        primary = hastate.current_primary(cluster)
    else:
        spec = topo.db_primary
        primary = spec.name if spec else None
    services = {
        f"{hp.name}/{svc.name}": supervisor.running(cluster.hosts[hp.name], svc)
        for hp in cluster.plan.hosts
        for svc in hp.services
    }
    return View(backends=backends, vip_holder=holder, primary=primary, services=services)


@contextlib.contextmanager
def recorder_lock(cluster: Cluster) -> Iterator[bool]:
    """Yields True if this process may record events (it holds <cluster>/watcher.lock), else False."""
    try:
        handle = open(cluster.layout.watcher_lock, "a")  # noqa: SIM115 (held for the block)
    except OSError:  # not root, or no cluster directory: watch without recording
        yield False
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError:
            held = False
        yield held
    finally:
        handle.close()


class Watched(Protocol):
    """What the watcher needs of a cluster: a `Cluster`, or on a server its topology and that server's layout."""

    @property
    def topology(self) -> Topology: ...

    @property
    def layout(self) -> Layout: ...


@dataclass(frozen=True)
class ServerSide:
    """The cluster as the watcher on the monitoring server has it (no machines: it looks over the network)."""

    topology: Topology
    layout: Layout


class Watcher:
    """Looks, compares with the last look, and (if `record`) appends the events to events.jsonl. `looker`:
    how to look (default: into every host, `look`)."""

    def __init__(
        self,
        cluster: Watched,
        *,
        record: bool = True,
        source: str = "monitor",
        looker: Callable[[], View] | None = None,
    ) -> None:
        self.cluster = cluster
        self.record = record
        self.source = source
        self.view: View | None = None
        if looker is None:
            assert isinstance(cluster, Cluster), "looking into the hosts needs their machines"
            looker = functools.partial(look, cluster)
        self.looker = looker

    def tick(self) -> list[Event]:
        found, self.view = advance(self.view, self.looker())
        if self.record:
            for kind, host, detail in found:
                events.record(self.cluster.layout, kind, host, detail, source=self.source)
        return found


# ---- the service ----


def cert_expiries(cluster: Watched) -> dict[str, float]:
    """not_after (Unix time) of each certificate webinfra serves or trusts: the CA, the site's, the hosts'."""
    # Here, not at the top: `status --watch` imports this module (observe/live.py) for `look`, and must not
    # load cryptography (tests/unit/test_cli_lazy.py); only the watcher service reads certificates.
    from cryptography import x509

    layout, tls = cluster.layout, cluster.topology.tls
    files: dict[str, Path] = {"ca": layout.ca_cert, "site": layout.site_pem}
    if tls.cert_file:
        files["site"] = Path(tls.cert_file)
    if tls.ca_file:
        files["ca"] = Path(tls.ca_file)
    files.update({p.stem: p for p in sorted(layout.pki.glob("*.crt"))})
    out: dict[str, float] = {}
    for name, path in files.items():
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        out[name] = cert.not_valid_after_utc.timestamp()
    return out


class MonitorService:
    def __init__(self, cluster: Watched, interval: float = 1.0, looker: Callable[[], View] | None = None) -> None:
        # Only the watcher service exports metrics: `status --watch` imports this module without it.
        from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

        disable_created_metrics()
        self.cluster = cluster
        self.interval = interval
        self.watcher = Watcher(cluster, looker=looker)
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_total = Counter("webinfra_events_total", "Events the watcher recorded", ("kind",), registry=r)
        self.vip_moves = Counter("webinfra_vip_moves", "Times the VIP moved to another load balancer", registry=r)
        self.primary_changes = Counter("webinfra_primary_changes", "Times the writable primary changed", registry=r)
        self.vip_holder = Gauge("webinfra_vip_holder", "1 on the load balancer holding the VIP", ("lb",), registry=r)
        self.cert_not_after = Gauge(
            "webinfra_cert_not_after_seconds", "When a certificate expires (Unix time)", ("cert",), registry=r
        )
        self.tick_seconds = Gauge("webinfra_monitor_tick_seconds", "How long the last look took", registry=r)
        self.last_tick = Gauge("webinfra_monitor_last_tick_timestamp_seconds", "When the last look ended", registry=r)
        self._certs_at = 0.0
        self.stop = threading.Event()

    def tick(self) -> None:
        started = time.monotonic()
        for event in self.watcher.tick():
            log.info("event %s %s %s", *event)
            self.events_total.labels(event[0]).inc()
            if vip_moves(event):
                self.vip_moves.inc()
            if event[0] == "primary_changed":
                self.primary_changes.inc()
        view = self.watcher.view
        if self.cluster.topology.vip is not None and view is not None:
            holders = (view.vip_holder or "").split(",")
            for lb in self.cluster.topology.with_role(Role.LB):
                self.vip_holder.labels(lb.name).set(1 if lb.name in holders else 0)
        if self.cluster.topology.tls.enabled and time.monotonic() - self._certs_at > 60:
            for name, not_after in cert_expiries(self.cluster).items():
                self.cert_not_after.labels(name).set(not_after)
            self._certs_at = time.monotonic()
        self.tick_seconds.set(time.monotonic() - started)
        self.last_tick.set_to_current_time()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # one bad look (a host being torn down) must not end the watcher
                log.exception("look failed")
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> None:
    from prometheus_client import start_http_server  # the service only (see MonitorService)

    parser = argparse.ArgumentParser(prog="python -m webinfra.observe.monitor", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--cluster")
    parser.add_argument("--topology", type=Path, help="on a server: the topology (JSON) the plan ships there")
    parser.add_argument("--listen", required=True, help="address:port of /metrics")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.topology:  # on the monitoring server: over the network, events in this server's state
        from webinfra.observe.netlook import look_over_network
        from webinfra.state import ServerLayout

        topo = Topology.model_validate_json(args.topology.read_text())
        service = MonitorService(ServerSide(topo, ServerLayout()), args.interval, lambda: look_over_network(topo))
    elif args.cluster and args.state_dir:
        service = MonitorService(Cluster.existing(args.cluster, args.state_dir), args.interval)
    else:
        parser.error("give --topology, or --state-dir and --cluster")
    address, _, port = args.listen.rpartition(":")
    server, _thread = start_http_server(int(port), address, registry=service.registry)
    signal.signal(signal.SIGTERM, lambda *_: service.stop.set())
    signal.signal(signal.SIGINT, lambda *_: service.stop.set())
    log.info("watching %s every %gs; metrics on %s", service.cluster.topology.name, args.interval, args.listen)
    service.run()
    server.shutdown()


if __name__ == "__main__":
    main()
