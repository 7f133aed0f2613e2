"""The agent's configuration file (`agent.json`, rendered by webinfra's plan), validated strictly.

Unknown keys are errors (`extra="forbid"`): a typo in a rendered config must stop the agent at start,
not silently fall back to a default in the middle of a failover.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from webinfra.agent.snapshot import Settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MariadbSettings(_Strict):
    """This host's MariaDB: admin SQL goes over `socket`; replicas of it connect to `port`."""

    socket: Path
    port: int = Field(default=3306, ge=1, le=65535)
    datadir: Path
    # mysqld's own pid file: with the socket, the proof that it is gone (not merely slow) before a leader
    # releases its lease for it.
    pid_file: Path | None = None
    # Old datadirs kept aside by re-clones (with their errant transactions exported), newest first.
    keep_diverged: int = Field(default=2, ge=0, le=10)


class MemberSpec(_Strict):
    address: str


class MariadbControl(_Strict):
    """Commands that stop and start this host's MariaDB through webinfra's supervisor (used by re-clone)."""

    stop: list[str] = Field(min_length=1)
    start: list[str] = Field(min_length=1)


class AgentConfig(_Strict):
    cluster: str
    host: str
    address: str
    listen_address: str = "0.0.0.0"
    listen_port: int = Field(default=8008, ge=1, le=65535)
    etcd_endpoints: list[str] = Field(min_length=1)
    # etcd security: the CA its https endpoints' certificates chain to, and this agent's etcd user (a role
    # with read/write on `prefix` only) with its password in a 0600 secret file. None: plain, anonymous.
    etcd_ca_file: Path | None = None
    etcd_user: str | None = None
    etcd_password_file: Path | None = None
    prefix: str
    # etcd refuses TTLs below ~1.5 x its election timeout (2 s with its defaults) and rounds them up.
    lease_ttl: int = Field(default=2, ge=1, le=600)
    loop_interval: float = Field(default=0.5, gt=0, le=60)
    replica_max_lag: float = Field(default=5.0, gt=0)
    when_no_replica_acks: Literal["fallback_async", "block"] = "fallback_async"
    semi_sync_fallback_ms: int = Field(default=500, ge=0)
    mariadb: MariadbSettings
    members: dict[str, MemberSpec] = Field(min_length=1)
    initial_primary: str
    repl_user: str
    repl_password_file: Path
    # CA that replication sources' certificates chain to: when set, replication is TLS with the source's
    # certificate verified (the replication user is REQUIRE SSL then).
    repl_ssl_ca: Path | None = None
    token_file: Path
    mariadb_control: MariadbControl
    events_file: Path
    # Not in webinfra's rendered file; tests shorten it. How long a leader waits for a switchover target.
    switchover_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if self.host not in self.members:
            raise ValueError(f"host {self.host!r} is not one of members {sorted(self.members)}")
        if self.initial_primary not in self.members:
            raise ValueError(f"initial_primary {self.initial_primary!r} is not one of members {sorted(self.members)}")
        if self.members[self.host].address != self.address:
            raise ValueError(f"address {self.address!r} differs from members[{self.host!r}] {self.members[self.host]}")
        if not self.prefix.endswith("/"):
            raise ValueError(f"prefix {self.prefix!r} must end with '/'")
        if (self.etcd_user is None) != (self.etcd_password_file is None):
            raise ValueError("etcd_user and etcd_password_file go together")
        return self

    def repl_tls_clause(self) -> str:
        """CHANGE MASTER options for the replication connection's TLS."""
        if self.repl_ssl_ca is None:
            return "MASTER_SSL=0"
        ca = str(self.repl_ssl_ca).replace("\\", "\\\\").replace("'", "\\'")
        return f"MASTER_SSL=1, MASTER_SSL_CA='{ca}', MASTER_SSL_VERIFY_SERVER_CERT=1"

    @property
    def fence_margin(self) -> float:
        """How long before the lease can expire in etcd a leader that cannot renew makes itself read-only."""
        # A full second (at TTL >= 3 s) leaves room for the fencing SQL itself on a loaded machine: it must
        # finish before etcd can expire the lease and let a replica promote.
        return min(1.0, self.lease_ttl / 3)

    @property
    def member_ttl(self) -> int:
        return self.lease_ttl + 1

    def address_of(self, host: str) -> str:
        return self.members[host].address

    def repl_password(self) -> str:
        return self.repl_password_file.read_text().strip()

    def token(self) -> str:
        """The clone token; empty (so every request is refused) when the file is missing."""
        try:
            return self.token_file.read_text().strip()
        except OSError:
            return ""


def load_config(path: Path) -> AgentConfig:
    """Read and validate `path`; raises `ValueError` (pydantic's `ValidationError`) or `OSError`."""
    return AgentConfig.model_validate(json.loads(path.read_text()))


def settings_of(config: AgentConfig) -> Settings:
    """The slice of the config `decide` reads."""
    return Settings(
        host=config.host,
        initial_primary=config.initial_primary,
        lease_ttl=float(config.lease_ttl),
        fence_margin=config.fence_margin,
        replica_max_lag=config.replica_max_lag,
        when_no_replica_acks=config.when_no_replica_acks,
        semi_sync_fallback=config.semi_sync_fallback_ms / 1000,
        switchover_timeout=config.switchover_timeout,
        restart_hung_after=3.0 * config.lease_ttl,
        members={name: m.address for name, m in config.members.items()},
    )
