"""`HostPlan.lb_servers`, haproxy.cfg's server lines as values, say what the file says: drain, scale and the
server-state hooks use them instead of parsing the rendered file. The file is parsed here, once, as the
reference (the way ops/drain.py did before issue 9)."""

from __future__ import annotations

import pytest
from test_rendered_golden import CASES, STATE, VARIANTS, _plan

from webinfra.daemons.haproxy import matching_state

ALL = {**CASES, **VARIANTS}


def _parsed(cfg: str) -> dict[tuple[str, str], str]:
    """(backend, server) -> `add server` arguments: address, `default-server` settings, the line's own."""
    section, defaults, lines = "", "", {}
    for raw in cfg.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if raw[:1].strip():
            section = " ".join(words[:2])
        elif section.startswith("defaults") and words[0] == "default-server":
            defaults = " ".join(words[1:])
        elif section.startswith("backend ") and words[0] == "server":
            lines[(section.split()[1], words[1])] = words[2:]
    return {key: " ".join([w[0], defaults, *w[1:]]).replace("  ", " ") for key, w in lines.items()}


@pytest.mark.parametrize("name", list(ALL))
def test_lb_servers_match_the_rendered_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBINFRA_RUN_DIR", "/golden/run")
    plan = _plan(ALL[name])
    lbs = [hp for hp in plan.hosts if "lb" in hp.roles]
    assert lbs and STATE
    for hp in lbs:
        cfg = next(f.content for f in hp.files if f.path.name == "haproxy.cfg")
        assert {(s.backend, s.name): s.args for s in hp.lb_servers} == _parsed(cfg)
    for hp in plan.hosts:
        if "lb" not in hp.roles:
            assert hp.lb_servers == ()


def test_matching_state_keeps_only_servers_whose_address_port_and_tls_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBINFRA_RUN_DIR", "/golden/run")
    hp = next(hp for hp in _plan(CASES["hardened"]).hosts if "lb" in hp.roles)
    site = next(s for s in hp.lb_servers if s.backend == "site")

    def line(backend: str, name: str, address: str, port: int, tls: str) -> str:
        fields = ["1", backend, "1", name, address, "2", "0", "1", "1", "0", "0", "0", "0", "0", "0", "0", "0", "0"]
        return " ".join([*fields, str(port), "0", tls])

    kept = line("site", site.name, site.address, site.port, "1" if site.tls else "0")
    moved = line("site", site.name, site.address, site.port + 1, "1" if site.tls else "0")
    gone = line("site", "web-99", "198.18.190.99", site.port, "0")
    state = "1\n# be_id be_name ...\n" + "\n".join([kept, moved, gone]) + "\n"
    assert matching_state(state, hp.lb_servers) == "1\n# be_id be_name ...\n" + kept + "\n"
