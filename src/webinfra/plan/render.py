"""What every daemon's rendering shares: the jinja2 templates (plan/templates/), the TLS settings, and
`HostContext`, what a daemon's `contribute` is given for one host. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import jinja2

from webinfra.model import HostSpec, Topology
from webinfra.plan.spec import AppRelease, BackendServer, FileSpec, ServiceSpec
from webinfra.state import HostDirs, Layout

# Mozilla "intermediate" (TLS 1.2 ciphers: forward secrecy and AEAD only; TLS 1.3 suites), for HAProxy,
# nginx and MariaDB alike.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("webinfra.plan", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # configs, not HTML
    )


def render(template: str, **values: object) -> str:
    return _env().get_template(template).render(**values)


def yaml_text(data: object, *, allow_unicode: bool = True) -> str:
    """Block-style YAML, keys in their given order, lines unwrapped. With libyaml's dumper when PyYAML has
    it: the same text (the golden tests) ~10x faster; the pure-Python one took ~0.08 s for the Prometheus
    config and rules of 40 hosts, on every command that builds the plan (`status` too)."""
    import yaml  # here: most of the plan needs no YAML

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        data, Dumper=dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=allow_unicode
    )


def host_tls(topo: Topology, layout: Layout, name: str) -> dict[str, str]:
    """A web or DB host's own certificate (services/pki.py makes it), and what to verify peers against."""
    return {
        "cert": str(layout.host_cert(name)),
        "key": str(layout.host_key(name)),
        "ca": str(layout.ca_cert),
        "ciphers": TLS12_CIPHERS,
        "ciphersuites": TLS13_CIPHERSUITES,
    }


@dataclass(frozen=True)
class HostContext:
    """One host of the topology, as every daemon's `contribute` sees it."""

    topo: Topology
    layout: Layout
    name: str
    python: str
    releases: Mapping[str, AppRelease]
    draining: frozenset[str]
    firewall_ruleset: str | None

    @property
    def spec(self) -> HostSpec:
        return self.topo.host(self.name)

    @property
    def dirs(self) -> HostDirs:
        return self.layout.host(self.name)

    @property
    def address(self) -> str:
        return str(self.topo.address_of(self.name))

    def template_values(self) -> dict[str, object]:
        """What every host template (my.cnf, nginx.conf) names: the host, its cluster and directories."""
        dirs = self.dirs
        return {
            "host": self.name,
            "cluster": self.topo.name,
            "run_dir": dirs.run,
            "log_dir": dirs.log,
            "tmp_dir": dirs.tmp,
        }


class Contribution(NamedTuple):
    """What a daemon adds to one host's plan (empty when the host does not run it)."""

    files: list[FileSpec]
    services: list[ServiceSpec]
    lb_servers: tuple[BackendServer, ...] = ()  # HAProxy's server lines, as values
    vrrp_peers: tuple[str, ...] = ()  # keepalived's unicast peers (addresses)


NOTHING = Contribution([], [])
