"""A small synchronous etcd v3 client over etcd's JSON gateway (grpc-gateway), on httpx.

Keys and values travel base64-encoded; int64 fields come back as JSON strings and zero values are
omitted (a failed txn has no "succeeded", an empty range no "kvs"). Every call tries the endpoints in
order, starting with the one that answered last, each with a short timeout, so a dead member costs one
timeout at most and a live one answers in milliseconds.

An endpoint counts as unreachable when it does not answer, answers 5xx, or answers with a gRPC code
that means "no quorum right now" (Unavailable, DeadlineExceeded, ...). Without quorum etcd does not
answer reads or writes at all (linearizable requests wait for a leader), so our timeout turns a
minority partition into `DcsUnreachable`, which is what the agent must see there.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from webinfra.control.agent import clock

# gRPC status codes that etcd gives as an *answer* (the cluster works; the request was wrong or moot).
_ANSWER_CODES = {3: "InvalidArgument", 5: "NotFound", 6: "AlreadyExists", 9: "FailedPrecondition", 11: "OutOfRange"}


class DcsUnreachable(Exception):
    """No endpoint answered with quorum within the time allowed."""


class DcsError(Exception):
    """etcd answered, but refused the request (e.g. NotFound for an unknown lease)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd: {message} (code {code})")
        self.code = code


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with `prefix` (last byte + 1)."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


class EtcdClient:
    """Sync etcd client; one instance per thread (the agent's loop owns it)."""

    def __init__(self, endpoints: list[str], *, timeout: float = 0.5) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._preferred = 0
        self._deadline: float | None = None
        self._http = httpx.Client(timeout=timeout)

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
            timeout = self.timeout
            if self._deadline is not None:
                timeout = min(timeout, self._deadline - clock.now())
                if timeout <= 0.005:
                    errors.append("deadline reached")
                    break
            url = self.endpoints[index] + path
            try:
                resp = self._http.post(url, json=body, timeout=timeout)
                data: dict[str, Any] = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            code = int(data.get("code", 0) or 0) if isinstance(data, dict) else 0
            if resp.status_code == 200 and "error" not in data:
                self._preferred = index
                return data
            if code in _ANSWER_CODES:
                self._preferred = index
                raise DcsError(code, str(data.get("message") or data.get("error")))
            errors.append(f"{url}: HTTP {resp.status_code} {data.get('message', '')}".strip())
        raise DcsUnreachable("; ".join(errors) or "no endpoint")

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
