"""A small synchronous etcd v3 client over etcd's JSON gateway (grpc-gateway), on httpx.

Keys and values travel base64-encoded; int64 fields come back as JSON strings and zero values are
omitted (a failed txn has no "succeeded", an empty range no "kvs"). Every call tries the endpoints in
order, starting with the one that answered last, each with a short timeout, so a dead member costs one
timeout at most and a live one answers in milliseconds.

An endpoint counts as unreachable when it does not answer, answers 5xx, or answers with a gRPC code
that means "no quorum right now" (Unavailable, DeadlineExceeded, ...). Without quorum etcd does not
answer reads or writes at all (linearizable requests wait for a leader), so our timeout turns a
minority partition into `DcsUnreachable`, which is what the agent must see there.

Security (webinfra's hardened topology): the endpoints are https, verified against `ca_file` (the
cluster's local CA), and etcd auth is on. With `credentials`, the client gets a token from
/v3/auth/authenticate on first use and sends it in the Authorization header of every call; when etcd
says the token is invalid (it expired, or the member restarted and forgot it) the client authenticates
again and retries that call once. A refused password is a `DcsAuthError` (an answer, not an outage).
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from webinfra.agent import clock

if TYPE_CHECKING:
    from webinfra.agent.config import AgentConfig

# gRPC status codes that etcd gives as an *answer* (the cluster works; the request was wrong or moot).
_ANSWER_CODES = {
    3: "InvalidArgument",
    5: "NotFound",
    6: "AlreadyExists",
    7: "PermissionDenied",
    9: "FailedPrecondition",
    11: "OutOfRange",
}
# What etcd says about a token it does not (or no longer) know, and a request without one on a cluster with
# auth on: authenticate again, then retry once.
_UNAUTHENTICATED = 16
_NO_TOKEN_MESSAGE = "user name is empty"


class DcsUnreachable(Exception):
    """No endpoint answered with quorum within the time allowed."""


class DcsError(Exception):
    """etcd answered, but refused the request (e.g. NotFound for an unknown lease)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd: {message} (code {code})")
        self.code = code


class DcsAuthError(DcsError):
    """etcd refused our user name or password (or we sent none to a cluster with auth on)."""


@dataclass(frozen=True)
class EtcdCredentials:
    """An etcd user. `from_file` reads the password from a 0600 secret file."""

    user: str
    password: str = field(repr=False)  # never printed

    @classmethod
    def from_file(cls, user: str, password_file: Path) -> EtcdCredentials:
        return cls(user, password_file.read_text().strip())


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


class _EndpointDown(Exception):
    """This endpoint did not answer usefully (no answer, 5xx, no quorum); try the next one."""

    def __init__(self, message: str, *, deadline: bool = False) -> None:
        super().__init__(message)
        self.deadline = deadline


def _token_refused(exc: DcsError) -> bool:
    return exc.code == _UNAUTHENTICATED or (exc.code == 3 and _NO_TOKEN_MESSAGE in str(exc))


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with `prefix` (last byte + 1)."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


class EtcdClient:
    """Sync etcd client; one instance per thread (the agent's loop owns it)."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float = 0.5,
        ca_file: Path | str | None = None,
        credentials: EtcdCredentials | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport`: how requests travel (webinfra passes one that makes them from a member's host, and
        verifies TLS there); None: straight from this process, verified against `ca_file`."""
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self.credentials = credentials
        self._token: str | None = None
        self._preferred = 0
        self._deadline: float | None = None
        if transport is not None:
            self._http = httpx.Client(timeout=timeout, transport=transport)
        else:
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
            self._http = httpx.Client(timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def set_deadline(self, deadline: float | None) -> None:
        """Give up every call at `deadline` (clock.now(), CLOCK_BOOTTIME) at the latest, whatever the endpoints do.

        The leader sets it to its fencing time, so a slow DCS can never delay fencing."""
        self._deadline = deadline

    @property
    def preferred_endpoint(self) -> str:
        return self.endpoints[self._preferred]

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path` on the first endpoint that answers; raise DcsUnreachable or DcsError."""
        n = len(self.endpoints)
        errors: list[str] = []
        for i in range(n):
            index = (self._preferred + i) % n
            try:
                data = self._call_endpoint(self.endpoints[index], path, body)
            except _EndpointDown as exc:
                errors.append(str(exc))
                if exc.deadline:
                    break
                continue
            except DcsError:
                self._preferred = index
                raise
            self._preferred = index
            return data
        raise DcsUnreachable("; ".join(errors) or "no endpoint")

    def _call_endpoint(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One endpoint: authenticate first when we have no token; when etcd no longer knows our token,
        authenticate again and retry once."""
        if self.credentials is not None and self._token is None:
            self._token = self._authenticate(endpoint)
        try:
            return self._post(endpoint, path, body)
        except DcsError as exc:
            if self.credentials is None or not _token_refused(exc):
                raise
        self._token = None
        self._token = self._authenticate(endpoint)
        return self._post(endpoint, path, body)

    def _authenticate(self, endpoint: str) -> str:
        assert self.credentials is not None
        creds = {"name": self.credentials.user, "password": self.credentials.password}
        try:
            token = self._post(endpoint, "/v3/auth/authenticate", creds, authorize=False).get("token")
        except DcsError as exc:
            raise DcsAuthError(exc.code, f"user {self.credentials.user!r} refused: {exc}") from None
        if not token:
            raise DcsAuthError(9, "authentication is not enabled on this cluster (no token)")
        return str(token)

    def _post(self, endpoint: str, path: str, body: dict[str, Any], *, authorize: bool = True) -> dict[str, Any]:
        timeout = self.timeout
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - clock.now())
            if timeout <= 0.005:
                raise _EndpointDown("deadline reached", deadline=True)
        url = endpoint + path
        headers = {"Authorization": self._token} if authorize and self._token else None
        try:
            resp = self._http.post(url, json=body, timeout=timeout, headers=headers)
            data: dict[str, Any] = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _EndpointDown(f"{url}: {type(exc).__name__}") from None
        code = int(data.get("code", 0) or 0) if isinstance(data, dict) else 0
        if resp.status_code == 200 and "error" not in data:
            return data
        message = str(data.get("message") or data.get("error") or "")
        if code in _ANSWER_CODES or code == _UNAUTHENTICATED:
            raise DcsError(code, message)
        raise _EndpointDown(f"{url}: HTTP {resp.status_code} {message}".strip())

    # -- leases ------------------------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; returns its ID."""
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew `lease`; returns its TTL, 0 when the lease no longer exists (expired or revoked)."""
        result = self.call("/v3/lease/keepalive", {"ID": str(lease)}).get("result", {})
        return int(result.get("TTL", 0) or 0)

    def revoke(self, lease: int) -> bool:
        """Revoke `lease` (deleting its keys); False when it was already gone."""
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)})
        except DcsError as exc:
            if exc.code == 5:
                return False
            raise
        return True

    def time_to_live(self, lease: int) -> int:
        """Seconds left on `lease` (whole seconds, as etcd counts); -1 when it does not exist."""
        return int(self.call("/v3/lease/timetolive", {"ID": str(lease)}).get("TTL", 0) or 0)

    # -- keys --------------------------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        kvs = self._kvs(self.call("/v3/kv/range", {"key": _b64(key)}))
        return kvs[0] if kvs else None

    def get_prefix(self, prefix: str) -> list[KeyValue]:
        return self._kvs(self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": prefix_end(prefix)}))

    def put(self, key: str, value: str | bytes, *, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        self.call("/v3/kv/put", body)

    def delete(self, key: str) -> int:
        """Delete `key`; returns how many keys went (0 or 1)."""
        return int(self.call("/v3/kv/deleterange", {"key": _b64(key)}).get("deleted", 0) or 0)

    def create(self, key: str, value: str | bytes, *, lease: int = 0) -> bool:
        """Put `key` only if it does not exist (create_revision == 0); True when this call created it."""
        return self._txn_put(key, value, lease, {"target": "CREATE", "create_revision": "0"})

    def replace(self, key: str, value: str | bytes, mod_revision: int, *, lease: int = 0) -> bool:
        """Put `key` only if it was last modified at `mod_revision` (0: only if absent)."""
        return self._txn_put(key, value, lease, {"target": "MOD", "mod_revision": str(mod_revision)})

    def delete_if(self, key: str, mod_revision: int) -> bool:
        """Delete `key` only if it was last modified at `mod_revision`."""
        compare = {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}
        txn = {"compare": [compare], "success": [{"requestDeleteRange": {"key": _b64(key)}}]}
        return bool(self.call("/v3/kv/txn", txn).get("succeeded", False))

    def _txn_put(self, key: str, value: str | bytes, lease: int, compare: dict[str, str]) -> bool:
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", **compare}],
            "success": [{"requestPut": put}],
        }
        return bool(self.call("/v3/kv/txn", txn).get("succeeded", False))

    @staticmethod
    def _kvs(data: dict[str, Any]) -> list[KeyValue]:
        return [
            KeyValue(
                key=base64.b64decode(kv["key"]).decode(),
                value=base64.b64decode(kv.get("value", "")),
                create_revision=int(kv.get("create_revision", 0) or 0),
                mod_revision=int(kv.get("mod_revision", 0) or 0),
                lease=int(kv.get("lease", 0) or 0),
            )
            for kv in data.get("kvs", [])
        ]


def etcd_client_for(config: AgentConfig) -> EtcdClient:
    """The agent's client: its endpoints, CA and etcd user as agent.json names them."""
    credentials = None
    if config.etcd_user is not None and config.etcd_password_file is not None:
        credentials = EtcdCredentials.from_file(config.etcd_user, config.etcd_password_file)
    return EtcdClient(
        config.etcd_endpoints,
        timeout=min(0.5, config.loop_interval),
        ca_file=config.etcd_ca_file,
        credentials=credentials,
    )


# -- the agent's keys under the cluster prefix -------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Where the agents keep the cluster state, under `prefix` (which ends with '/')."""

    prefix: str

    @property
    def leader(self) -> str:
        return self.prefix + "leader"

    @property
    def initialized(self) -> str:
        return self.prefix + "initialized"

    @property
    def history(self) -> str:
        return self.prefix + "history"

    @property
    def switchover(self) -> str:
        return self.prefix + "switchover"

    @property
    def optime(self) -> str:
        """The last leader's durability promise (no lease: it must outlive that leader)."""
        return self.prefix + "optime"

    def member(self, host: str) -> str:
        return self.prefix + "members/" + host
