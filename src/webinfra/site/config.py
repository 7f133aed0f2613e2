"""Configuration of one site (message board) app server.

The rest of webinfra renders a JSON file per app server and points the
``WEBINFRA_SITE_CONFIG`` environment variable at it; :func:`load_config` reads and
validates it into a :class:`SiteConfig`.  The models forbid unknown keys so a typo
in the writer of that file fails loudly at start-up instead of being ignored.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

CONFIG_ENV = "WEBINFRA_SITE_CONFIG"

# Host and endpoint names end up in HTTP headers, so keep them to a safe token set.
# (Public: the DB layer applies it to server names the servers report themselves.)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _absolute_path(value: Path | None, field: str) -> Path | None:
    # The app server may run with any working directory; a relative path would silently depend on it.
    if value is not None and not value.is_absolute():
        raise ValueError(f"{field} must be an absolute path")
    return value


def read_secret_file(path: Path) -> str:
    """The secret on the first line of ``path`` (a cluster secret file, mode 0600)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].strip() if lines else ""


class DBEndpoint(_Strict):
    """One MariaDB server the site can talk to."""

    name: Name
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)] = 3306


class DBConfig(_Strict):
    """Where the site's data lives and how patient to be with it."""

    database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")]
    user: Annotated[str, Field(min_length=1, max_length=80)]
    password_file: Path
    writer: DBEndpoint
    readers: list[DBEndpoint] = Field(default_factory=list)
    ryw_wait_seconds: Annotated[float, Field(ge=0, le=60)] = 0.5
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    pool_max_size: Annotated[int, Field(ge=1, le=1000)] = 10
    suspect_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    # How long a write that was certainly not applied is retried while no primary accepts it (a failover
    # or switchover in progress). 0: fail at once (the seed design has no failover to wait for).
    write_retry_seconds: Annotated[float, Field(ge=0, le=60)] = 0.0
    # Behind a DB proxy (HA mode) an endpoint is a role, not a server: ask each new
    # connection which server it reached (@@report_host) and whether that server is
    # read-only, so X-DB names the real server and read-your-writes skips the wait
    # when the "reader" endpoint was routed to the primary itself.
    identify_servers: bool = False
    # TLS to MariaDB: the servers' certificates must chain to this CA. The name check is off only where
    # every endpoint is a local DB router (127.0.0.1) rather than the server itself.
    tls_ca_file: Path | None = None
    tls_check_hostname: bool = True

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for every DB connection, or None for plain TCP (no CA configured)."""
        if self.tls_ca_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.tls_check_hostname
        return context

    @field_validator("password_file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        _absolute_path(value, "password_file")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DBConfig:
        # Endpoint names key the pools, the suspect list and the X-DB header.
        names = [self.writer.name, *(r.name for r in self.readers)]
        if len(set(names)) != len(names):
            raise ValueError(f"DB endpoint names must be unique, got {names}")
        return self

    @property
    def query_timeout_seconds(self) -> float:
        """Upper bound for one attempt on one endpoint (connect + wait + query).

        Without it a frozen server (SIGSTOP, black-holed network after connect)
        would hang requests forever instead of failing over.
        """
        return self.connect_timeout_seconds + self.ryw_wait_seconds + 5.0

    def read_password(self) -> str:
        """Return the password stored on the first line of ``password_file``."""
        text = self.password_file.read_text(encoding="utf-8")
        lines = text.splitlines()
        return lines[0] if lines else ""


class SiteConfig(_Strict):
    """Everything one app server needs to know."""

    host: Name
    site_name: Annotated[str, Field(min_length=1, max_length=253)]
    # A superset of what the topology allows; header-safe either way.
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9._+-]{1,64}$")]
    db: DBConfig
    # Cluster secrets, the same on every app server: the key that signs the site's cookies (read-your-writes
    # GTID, entry author), and the admin token that may delete any entry. Without a signing key each process
    # makes up its own (cookies then only hold on the server that set them); without an admin token only
    # authors can delete.
    signing_key_file: Path | None = None
    admin_token_file: Path | None = None

    @field_validator("signing_key_file", "admin_token_file")
    @classmethod
    def _secret_paths_absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _absolute_path(value, str(info.field_name))


def load_config(path: str | os.PathLike[str] | None = None) -> SiteConfig:
    """Load the config from ``path`` or, if not given, from ``$WEBINFRA_SITE_CONFIG``."""
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if not env:
            raise RuntimeError(f"{CONFIG_ENV} is not set; it must name the site's JSON config file")
        path = env
    return SiteConfig.model_validate_json(Path(path).read_text(encoding="utf-8"))
