"""One home per daemon: its lifecycle on a running cluster, listed in ONE explicit registry (registry.py).

    registry.py         DAEMONS: one `Daemon` per service name, in start order: its supervisor hooks
                        (before_start / before_reload / before_stop), its after-start step (one host),
                        its after-phase step (what `up` waits for), the certificates it holds, and how it
                        takes a changed config during `scale` (`Refresh`). Cluster and ops/scale.py dispatch
                        from it; no `if svc.name == ...`, and nothing registers itself on import.
    haproxy.py          the runtime API client (unix socket), the server-state hooks, live weights
    mariadb.py          datadir init hook, bootstrap of the primary, replicas, admin SQL, status facts
    keepalived.py       the peer-ping start hook; the wait for the VIP after its phase
    etcd.py, agent.py   the waits after their phases (quorum + auth; a leader + the schema)
    mysqld_exporter.py  its start hook: the `exporter` account and its 0600 client file
    firewall.py         the nftables loader (not a service: `up` applies it before any service starts)

Daemons with nothing but a config and a command line (nginx, app, dbproxy, node/nginx exporters,
Prometheus, Alertmanager, monitor) have an entry in the registry and no module here.

Where the pure part lives: what each daemon renders (FileSpecs from jinja2 templates, ServiceSpec, readiness
Probe) is in plan/ (plan/daemons/ and the modules it names), which imports nothing that does I/O, so `webinfra
plan` and the golden tests build a plan without touching a machine. This package is the impure half: it sits
with control/ in one layer (`webinfra.control : webinfra.daemons` in pyproject's import-linter contract), since
`Cluster` iterates the registry and the after-start steps are handed the `Cluster`; below that, it may import
services/, hosts/, plan/ and model/.
"""
