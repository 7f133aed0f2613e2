"""webinfra's own access to a cluster's etcd: clients that run inside a member's host, the quorum check,
and the auth bootstrap `up` runs once etcd has quorum.

With [tls] enabled the members speak TLS only and etcd auth is on (plan/daemons/etcd.py). Users and roles:
- `root` (etcd's built-in superuser role): used only here, to set the others up; its password is the
  cluster secret `etcd-root` (0600, management side).
- `agent`: the DB agents' user, with the role `agent` that may read and write the cluster's key prefix
  (/webinfra/<cluster>/) and nothing else; password: the secret `etcd-agent`.
`ensure_auth` makes that true and says what it changed: nothing on a second `up`, after a restart or a
`scale` (etcd keeps users and roles in its data dir).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from webinfra.errors import WebinfraError
from webinfra.model import Role
from webinfra.plan.daemons.agent import dcs_prefix
from webinfra.plan.daemons.etcd import ETCD_AGENT_SECRET, ETCD_AGENT_USER, ETCD_ROOT_SECRET, etcd_scheme, etcd_secured
from webinfra.services.secrets import read_secret

if TYPE_CHECKING:
    from webinfra.agent.dcs import EtcdClient, EtcdCredentials
    from webinfra.control.cluster import Cluster

# The etcd client is the agent's (agent/dcs.py), imported inside the functions that use it:
# importing any module of the agent package loads the whole agent (~0.18 s), which `status` and every
# other command that imports Cluster would pay at start-up without ever talking to etcd. httpx
# (runtime/client.py) likewise: `status` makes no httpx call.

T = TypeVar("T")
ROOT_USER = "root"
_NOT_ENABLED = "authentication is not enabled"
_EXISTS = "already exists"


class EtcdAuthError(WebinfraError, RuntimeError):
    """The auth bootstrap cannot proceed; the message is for the user."""


def member_url(cluster: Cluster, member: str) -> str:
    topo = cluster.topology
    return f"{etcd_scheme(topo)}://{topo.address_of(member)}:{topo.etcd.client_port}"


def credentials(cluster: Cluster, user: str) -> EtcdCredentials | None:
    """`root` or the agents' user, with the password from the cluster's secrets; None when auth is off."""
    from webinfra.agent.dcs import EtcdCredentials  # not at start-up: see the note at the top

    if not etcd_secured(cluster.topology):
        return None
    secret = ETCD_ROOT_SECRET if user == ROOT_USER else ETCD_AGENT_SECRET
    return EtcdCredentials(user, read_secret(cluster.layout.secret(secret)))


def _ca(cluster: Cluster) -> str | None:
    """The CA as the member sees it: requests are made from the member's machine (a server names its own
    path; an emulated host reads the state dir's)."""
    return str(cluster.fleet.plan_layout.ca_cert) if etcd_secured(cluster.topology) else None


def on_member(
    cluster: Cluster,
    member: str,
    fn: Callable[[EtcdClient], T],
    *,
    user: str | None = ETCD_AGENT_USER,
    timeout: float = 2.0,
) -> T:
    """Run `fn` with a client of `member` inside that member's host (its firewall lets only the agents'
    hosts in from outside). `user=None`: anonymous."""
    creds = credentials(cluster, user) if user else None
    url = member_url(cluster, member)

    from webinfra.agent.dcs import EtcdClient  # not at start-up: see the note at the top
    from webinfra.runtime.client import MachineTransport

    transport = MachineTransport(cluster.hosts[member], ca_file=_ca(cluster))
    client = EtcdClient([url], timeout=timeout, credentials=creds, transport=transport)
    try:
        return fn(client)
    finally:
        client.close()


def healthy(cluster: Cluster, member: str, timeout: float = 0.5) -> bool:
    """The member's /health says true (it has a leader): over https verified against the CA when secured."""
    from webinfra.runtime.client import client_on  # not at start-up: see the note at the top

    url = member_url(cluster, member) + "/health"
    try:
        with client_on(cluster.hosts[member], ca_file=_ca(cluster), timeout=timeout) as client:
            resp = client.get(url)
        return resp.status_code == 200 and json.loads(resp.text).get("health") == "true"
    except Exception:  # no answer, or the host is gone (down): not healthy
        return False


def put(cluster: Cluster, key: str, value: str, *, ttl: int = 0) -> bool:
    """Put a key (under the cluster's prefix) as the agents' user, through any member that answers; with
    `ttl`, attached to a new lease of that many seconds (etcd deletes the key then)."""

    def write(c: EtcdClient) -> None:
        c.put(key, value, lease=c.grant(ttl) if ttl else 0)

    return _on_any_member(cluster, write)


def delete(cluster: Cluster, key: str) -> bool:
    """Delete a key (under the cluster's prefix) as the agents' user; False when no member answered."""
    return _on_any_member(cluster, lambda c: c.delete(key))


def _on_any_member(cluster: Cluster, fn: Callable[[EtcdClient], object]) -> bool:
    from webinfra.agent.dcs import DcsError, DcsUnreachable  # not at start-up: see the note at the top

    for spec in cluster.topology.with_role(Role.ETCD):
        try:
            on_member(cluster, spec.name, fn)
            return True
        except (DcsUnreachable, DcsError, OSError):
            continue
        except Exception:  # the host's namespace is gone
            continue
    return False


# ---- the auth bootstrap ----


def ensure_auth(cluster: Cluster) -> list[str]:
    """Users, role and permission as described above, and auth on. Returns what changed (empty: nothing).
    Idempotent; raises EtcdAuthError when no member answers or etcd refuses the root password."""
    from webinfra.agent.dcs import (  # not at start-up: see the note at the top
        DcsAuthError,
        DcsError,
        DcsUnreachable,
    )

    if not etcd_secured(cluster.topology) or not cluster.topology.ha:
        return []
    root = credentials(cluster, ROOT_USER)
    assert root is not None
    errors = []
    for spec in cluster.topology.with_role(Role.ETCD):
        member = spec.name
        try:
            if on_member(cluster, member, lambda c: _auth_enabled(c, root), user=None, timeout=5.0):
                return on_member(cluster, member, lambda c: _converge(cluster, c, True), user=ROOT_USER, timeout=5.0)
            return on_member(cluster, member, lambda c: _first_time(cluster, c), user=None, timeout=5.0)
        except DcsAuthError as exc:
            raise EtcdAuthError(
                f"etcd refused the root password in {cluster.layout.secret(ETCD_ROOT_SECRET)} ({exc}); "
                "was the cluster's secrets directory replaced?"
            ) from None
        except (DcsUnreachable, DcsError) as exc:
            errors.append(f"{member}: {exc}")
        except Exception as exc:  # the host's namespace is gone
            errors.append(f"{member}: {exc}")
    raise EtcdAuthError("could not set up etcd auth: " + "; ".join(errors))


def _auth_enabled(c: EtcdClient, root: EtcdCredentials) -> bool:
    """Authenticate as root: True when auth is on; False when it is off; DcsAuthError when refused."""
    from webinfra.agent.dcs import DcsAuthError, DcsError  # not at start-up: see the note at the top

    try:
        c.call("/v3/auth/authenticate", {"name": root.user, "password": root.password})
    except DcsError as exc:
        if exc.code == 9 and _NOT_ENABLED in str(exc):
            return False
        raise DcsAuthError(exc.code, str(exc)) from None
    return True


def _first_time(cluster: Cluster, c: EtcdClient) -> list[str]:
    """Auth is off: create everything (an interrupted earlier run may have made some of it), then enable."""
    root = credentials(cluster, ROOT_USER)
    assert root is not None
    _ensure_user(c, root, auth_on=False)
    c.call("/v3/auth/user/grant", {"user": root.user, "role": "root"})
    _converge(cluster, c, False)
    c.call("/v3/auth/enable", {})
    return [f"users root and agent, role agent (readwrite on {dcs_prefix(cluster.topology)}), auth enabled"]


def _converge(cluster: Cluster, c: EtcdClient, auth_on: bool) -> list[str]:
    """The agent role has exactly readwrite on the prefix; the agent user has that role and the current
    password. Returns what it changed."""
    from webinfra.agent.dcs import DcsError, prefix_end  # not at start-up: see the note at the top

    agent = credentials(cluster, ETCD_AGENT_USER)
    assert agent is not None
    changes: list[str] = []
    prefix = dcs_prefix(cluster.topology)
    wanted = {"permType": "READWRITE", "key": _b64(prefix), "range_end": prefix_end(prefix)}
    try:
        perms = c.call("/v3/auth/role/get", {"role": ETCD_AGENT_USER}).get("perm", [])
    except DcsError:
        c.call("/v3/auth/role/add", {"name": ETCD_AGENT_USER})
        changes.append("role agent added")
        perms = []
    # etcd omits zero values: a READ permission comes back without permType.
    have = [
        {"permType": p.get("permType", "READ"), "key": p.get("key", ""), "range_end": p.get("range_end", "")}
        for p in perms
    ]
    for perm in have:
        if perm != wanted:
            c.call(
                "/v3/auth/role/revoke", {"role": ETCD_AGENT_USER, "key": perm["key"], "range_end": perm["range_end"]}
            )
            changes.append("role agent: a foreign permission revoked")
    if wanted not in have:
        c.call("/v3/auth/role/grant", {"name": ETCD_AGENT_USER, "perm": wanted})
        changes.append(f"role agent: readwrite on {prefix}")
    changes += _ensure_user(c, agent, auth_on=auth_on)
    if ETCD_AGENT_USER not in c.call("/v3/auth/user/get", {"name": agent.user}).get("roles", []):
        c.call("/v3/auth/user/grant", {"user": agent.user, "role": ETCD_AGENT_USER})
        changes.append("user agent: role agent granted")
    return changes


def _ensure_user(c: EtcdClient, user: EtcdCredentials, *, auth_on: bool) -> list[str]:
    """`user` exists with the password of the secrets. With auth off a password cannot be tested: it is set."""
    from webinfra.agent.dcs import DcsError  # not at start-up: see the note at the top

    try:
        c.call("/v3/auth/user/add", {"name": user.user, "password": user.password})
        return [f"user {user.user} added"]
    except DcsError as exc:
        if _EXISTS not in str(exc):
            raise
    if auth_on and _password_ok(c, user):
        return []
    c.call("/v3/auth/user/changepw", {"name": user.user, "password": user.password})
    return [f"user {user.user}: password set"]


def _password_ok(c: EtcdClient, user: EtcdCredentials) -> bool:
    from webinfra.agent.dcs import DcsError  # not at start-up: see the note at the top

    try:
        c.call("/v3/auth/authenticate", {"name": user.user, "password": user.password})
    except DcsError:
        return False
    return True


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
