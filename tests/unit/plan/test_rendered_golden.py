"""Every file of every host, and every service's spec, for the default topology and each of examples/, byte
for byte against golden copies taken before the daemons/ restructure (issue 9): moving where a daemon's
rendering lives must not change one byte of what it renders. A few variants (no TLS, no firewall, alert
routes, a draining app host, a deployed release) cover branches the examples do not take."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from testkit import REPO
from webinfra.model import load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.spec import AppRelease, ClusterPlan
from webinfra.state import Layout

EXAMPLES = REPO / "examples"
DEFAULT = REPO / "src" / "webinfra" / "model" / "default.toml"
GOLDEN = Path(__file__).resolve().parent / "golden" / "rendered"
STATE = Path("/golden/state")


def _variant(base: Path, top: str = "", tables: str = "") -> str:
    """`base` with top-level keys put first and tables put last (where TOML reads them as meant)."""
    return top + base.read_text() + tables


CASES: dict[str, str | None] = {"default": None, **{p.stem: p.read_text() for p in sorted(EXAMPLES.glob("*.toml"))}}
VARIANTS = {
    "hardened-no-tls": _variant(EXAMPLES / "hardened.toml", tables="\n[tls]\nenabled = false\n"),
    "hardened-no-firewall": _variant(EXAMPLES / "hardened.toml", top="firewall = false\n"),
    "default-alert-routes": _variant(
        DEFAULT,
        tables='\n[monitoring.alerts]\nwebhook_urls = ["http://198.18.190.5:9000/hook"]\n'
        'email_to = ["ops@example.org"]\nemail_from = "webinfra@example.org"\nsmarthost = "mail.example.org:587"\n',
    ),
}


def dump(plan: ClusterPlan) -> str:
    """Every value of the plan a daemon contributes, in a stable text form."""
    out: list[str] = []
    for hp in plan.hosts:
        out.append(f"=== host {hp.name} {hp.address} roles={','.join(hp.roles)}")
        for svc in hp.services:
            out.append(f"--- service {svc!r}")
        for f in hp.files:
            out.append(f"--- file {f.path} mode={f.mode:o}")
            out.append(f.content)
    text = "\n".join(out) + "\n"
    bin_dir = str(Path(sys.executable).parent)
    text = re.sub(re.escape(bin_dir) + r"/python3?(?=[\s\"',)])", "<python>", text)
    return text.replace(bin_dir, "<venv-bin>")


def _plan(text: str | None, **kwargs: object) -> ClusterPlan:
    topo = load_topology(None) if text is None else parse_topology(text, "case.toml")
    return build_plan(topo, Layout.for_cluster(topo.name, STATE), **kwargs)  # type: ignore[arg-type]


def _check(name: str, plan: ClusterPlan) -> None:
    golden = GOLDEN / f"{name}.txt"
    text = dump(plan)
    if os.environ.get("WEBINFRA_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), f"rendering of {name} changed: review it, then WEBINFRA_UPDATE_GOLDEN=1"


@pytest.fixture(autouse=True)
def _run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBINFRA_RUN_DIR", "/golden/run")


@pytest.mark.parametrize("name", list(CASES))
def test_every_rendered_file_is_byte_identical(name: str) -> None:
    _check(name, _plan(CASES[name]))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_are_byte_identical(name: str) -> None:
    _check(name, _plan(VARIANTS[name]))


def test_draining_and_releases_are_byte_identical() -> None:
    text = (EXAMPLES / "split.toml").read_text()
    topo = parse_topology(text, "split.toml")
    apps = [h.name for h in topo.hosts if "app" in [r.value for r in h.roles]]
    releases = {apps[0]: AppRelease("v2", Path("/golden/releases/v2"))}
    _check("split-draining", _plan(text, releases=releases, draining=frozenset(apps[:1])))
