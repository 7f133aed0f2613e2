"""Monitoring daemons' start hooks. The exporters and Prometheus need nothing else: their configs are in the
plan (plan/monitoring.py). mysqld_exporter reads a client file holding its password, which a plan never
holds, so it is written here just before each start, with the node's `exporter` account."""

from __future__ import annotations

import contextlib

from webinfra.plan.layout import Layout
from webinfra.plan.monitoring import EXPORTER_SECRET, MYSQLD_EXPORTER_CNF
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime import CommandError, Machine
from webinfra.services import mariadb, supervisor
from webinfra.services.secrets import ensure_secret


def layout_of(plan: HostPlan) -> Layout:
    """The cluster's layout, from one of its hosts' directories (<cluster>/hosts/<host>)."""
    return Layout(plan.dirs.root.parent.parent)


def exporter_client_file(plan: HostPlan, password: str) -> str:
    return (
        "# Written by webinfra before mysqld_exporter starts (0600). The local socket only.\n"
        f"[client]\nuser = {mariadb.EXPORTER_USER}\npassword = {password}\nsocket = {mariadb.socket_path(plan)}\n"
    )


def before_mysqld_exporter(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    password = ensure_secret(layout_of(plan), EXPORTER_SECRET)
    host.put_file(plan.dirs.etc / MYSQLD_EXPORTER_CNF, exporter_client_file(plan, password), 0o600)
    # MariaDB may be down (a host started service by service): the exporter then reports mysql_up 0, and the
    # account is made at its next start.
    with contextlib.suppress(CommandError):
        mariadb.ensure_exporter_user(host, plan, password)


supervisor.register_hooks("mysqld-exporter", supervisor.Hooks(before_start=before_mysqld_exporter))
