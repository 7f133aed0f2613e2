"""`status`'s snapshot on machines in memory: what it asks each machine (one request per probed service whose
answer it also reads) and how the answers land in the JSON contract (docs/STATUS.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from runtime.fake_machine import FakeMachine  # tests/unit is on sys.path (its conftest)

from webinfra.control.cluster import Cluster
from webinfra.model import parse_topology
from webinfra.observe.status import snapshot
from webinfra.proving.bench_scale import scale_topology_text
from webinfra.runtime import HttpFailure, HttpRequest, HttpResponse
from webinfra.state import Layout


@dataclass
class AnsweringMachine(FakeMachine):
    """A fake whose HTTP answers come from `pages` (URL path -> JSON body); other paths: nothing answers."""

    pages: dict[str, object] = field(default_factory=dict)

    def http(self, request: HttpRequest) -> HttpResponse:
        self.calls.append(("http", request.method, request.url))
        path = "/" + request.url.split("/", 3)[3]
        if path not in self.pages:
            raise HttpFailure(f"{request.url}: refused")
        return HttpResponse(200, (("content-type", "application/json"),), json.dumps(self.pages[path]).encode())


def _cluster(tmp_path: Path) -> tuple[Cluster, dict[str, AnsweringMachine]]:
    topo = parse_topology(scale_topology_text(8, "tstat", 190), "<test>")
    cluster = Cluster(topo, Layout.for_cluster(topo.name, tmp_path))
    machines: dict[str, AnsweringMachine] = {}
    for hp in cluster.plan.hosts:
        pages: dict[str, object] = {}
        if "app" in hp.roles:
            pages["/healthz"] = {"status": "ok", "version": "v7"}
        if "db" in hp.roles:
            pages["/status"] = {"role": "primary" if hp.name == "db-01" else "replica", "leader": "db-01"}
        machine = AnsweringMachine(name=hp.name, address=hp.address, pages=pages)
        machine.running = {svc.name: 1000 + i for i, svc in enumerate(hp.services)}
        machine.ready = {svc.probe.port for svc in hp.services}
        machines[hp.name] = machine
    machines["lb-02"].address = str(topo.vip)  # lb-02 holds the VIP
    cluster.hosts = dict(machines)
    return cluster, machines


def test_snapshot_reads_each_probe_answer_once(tmp_path: Path) -> None:
    cluster, machines = _cluster(tmp_path)
    snap = snapshot(cluster)

    assert [h["name"] for h in snap["hosts"]] == [hp.name for hp in cluster.plan.hosts]
    for host in snap["hosts"]:
        assert all(s["state"] == "running" and s["pid"] for s in host["services"]), host
    apps = [h for h in snap["hosts"] if "app" in h["roles"]]
    assert apps and all(h["code_version"] == "v7" for h in apps)
    assert snap["lb"]["vip_holder"] == "lb-02"
    roles = {n["name"]: n["role"] for n in snap["db"]["nodes"]}
    assert roles == {"db-01": "primary", "db-02": "replica", "db-03": "replica"}
    assert snap["db"]["primary"] == "db-01"
    assert snap["db"]["nodes"][0]["lease"] == {"holder": "db-01", "seconds_left": None}

    # The app's /healthz and the agent's /status serve both the service state and the data: asked once each.
    for name, machine in machines.items():
        asked = [c[2] for c in machine.calls if c[0] == "http"]
        expected = ["/healthz"] if name.startswith("app-") else ["/status"] if name.startswith("db-") else []
        assert [url.split("/", 3)[3] for url in asked] == [p.lstrip("/") for p in expected], (name, asked)


def test_a_service_that_does_not_answer_is_starting_and_has_no_version(tmp_path: Path) -> None:
    cluster, machines = _cluster(tmp_path)
    machines["app-01"].pages.clear()  # the app runs but /healthz does not answer
    machines["db-02"].pages.clear()  # its agent runs but /status does not answer
    snap = snapshot(cluster)
    app = next(h for h in snap["hosts"] if h["name"] == "app-01")
    assert {s["name"]: s["state"] for s in app["services"]}["app"] == "starting"
    assert app["code_version"] is None
    assert {n["name"]: n["role"] for n in snap["db"]["nodes"]}["db-02"] in ("unknown", "down")
    assert any("app on app-01 is starting" in p for p in snap["health"]["problems"])
