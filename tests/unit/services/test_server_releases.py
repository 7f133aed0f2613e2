"""Code base releases on servers (services/server_releases.py): the plan names `current` on every app server with
the recorded version, and the shell scripts (ship, activate, prune, list) do what they say, run here by `sh`
against a temporary directory standing in for /opt/webinfra/site."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from runtime.fake_machine import FakeMachine  # tests/unit is on sys.path (its conftest)

from testkit import EXAMPLES
from webinfra.control.cluster import Cluster
from webinfra.model import Role, load_topology
from webinfra.plan.spec import AppRelease
from webinfra.runtime.machine import CommandError, RunResult
from webinfra.servers import units
from webinfra.servers.run import Target
from webinfra.services import releases, server_releases
from webinfra.services.releases import CodeBaseError
from webinfra.services.server_releases import CURRENT, SITE_ROOT, ServerCodeReleases
from webinfra.state import Layout


class ShellMachine(FakeMachine):
    """Runs `sh -c SCRIPT` here, with /opt/webinfra/site moved to a temporary directory."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def run(self, argv: Sequence[str], **options: Any) -> RunResult:
        assert list(argv[:2]) == ["sh", "-c"], argv
        script = argv[2].replace(str(SITE_ROOT), str(self.root))
        proc = subprocess.run(["sh", "-c", script], input=options.get("input"), capture_output=True, text=True)
        if options.get("check", True) and proc.returncode != 0:
            raise CommandError("server", list(argv), proc.returncode, proc.stderr)
        return RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def code_base(path: Path, marker: str) -> Path:
    (path / "templates").mkdir(parents=True)
    (path / "__init__.py").write_text("")
    (path / "app.py").write_text(f"VERSION = {marker!r}\ndef create_app(): ...\n")
    (path / "templates" / "index.html").write_text(marker)
    return path


def test_the_plan_names_current_with_the_recorded_version(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "servers.toml")
    local = Layout.for_cluster(topo.name, tmp_path)
    apps = [h.name for h in topo.with_role(Role.APP)]
    releases.record(local, apps[0], AppRelease("v2", SITE_ROOT / "v2"))
    for plan in (Cluster(topo, local).plan, Target.of(topo, tmp_path, None).plan):
        for host in apps:
            hp = plan.host(host)
            argv = hp.service("app").argv
            assert argv[argv.index("--app-dir") + 1] == str(CURRENT)  # the unit never changes with a deploy
            site_json = next(f for f in hp.files if f.path.name == "site.json").content
            want = "v2" if host == apps[0] else topo.app.version
            assert f'"version": "{want}"' in site_json
        unit = units.unit(plan.host(apps[0]).service("app"), topo.name)
        assert f"--app-dir {CURRENT} webinfra.site.app:create_app" in unit.text


def test_the_release_tar_holds_the_shim_and_the_code(tmp_path: Path) -> None:
    code = code_base(tmp_path / "site", "v2")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
    with tarfile.open(fileobj=BytesIO(server_releases.code_tar(code))) as tar:
        names = sorted(tar.getnames())
    assert names == [
        "webinfra/__init__.py",
        "webinfra/site/__init__.py",
        "webinfra/site/app.py",
        "webinfra/site/templates/index.html",
    ]


def test_ship_activate_prune_and_list_on_a_server(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "servers.toml")
    store = ServerCodeReleases(topo, Layout.for_cluster(topo.name, tmp_path / "state"))
    root = tmp_path / "opt-site"
    server = ShellMachine(root)
    v2 = code_base(tmp_path / "v2", "v2")

    shipped = store.ship("web-01", server, v2, "v2")
    assert shipped.copied and shipped.release == AppRelease("v2", SITE_ROOT / "v2")
    assert (root / "v2" / "webinfra" / "site" / "templates" / "index.html").read_text() == "v2"
    assert (root / "v2" / "webinfra" / "__init__.py").read_text() == releases.SHIM
    assert oct((root / "v2" / "webinfra" / "site" / "app.py").stat().st_mode & 0o777) == "0o644"
    assert (store.source("web-01", "v2") / "app.py").is_file()  # the local copy `rollback` ships again
    assert [p.name for p in root.iterdir()] == ["v2"]  # no staging directory left

    os.utime(root / "v2", (1_000_000, 1_000_000))
    again = store.ship("web-01", server, v2, "v2")
    assert not again.copied and (root / "v2").stat().st_mtime > 1_000_000
    again.undo()
    assert (root / "v2").stat().st_mtime == 1_000_000
    with pytest.raises(CodeBaseError, match="already deployed with other code"):
        store.ship("web-01", server, code_base(tmp_path / "other", "other"), "v2")

    store.activate("web-01", server, shipped.release)
    assert os.readlink(root / "current") == str(root / "v2")
    store.activate("web-01", server, AppRelease("1"))  # back on the installed code
    assert not (root / "current").exists()
    with pytest.raises(CommandError):
        store.activate("web-01", server, AppRelease("v9", SITE_ROOT / "v9"))

    for i, version in enumerate(["v3", "v4", "v5", "v6", "v7"]):
        made = store.ship("web-01", server, code_base(tmp_path / version, version), version)
        os.utime(root / version, (2_000_000 + i, 2_000_000 + i))
        assert made.copied
    store.activate("web-01", server, AppRelease("v7", SITE_ROOT / "v7"))
    assert set(store.kept("web-01", server)) == {"v2", "v3", "v4", "v5", "v6", "v7"}
    store.prune("web-01", server, {"v7", "v2"})
    kept = store.kept("web-01", server)
    # Besides those kept on purpose, the 3 most recent: v3, the oldest, goes.
    assert set(kept) == {"v2", "v4", "v5", "v6", "v7"} and kept["v7"] == 2_000_004
    assert (root / "current").is_symlink()

    fresh = store.ship("web-01", server, code_base(tmp_path / "v8", "v8"), "v8")
    fresh.undo()  # a failed deploy takes the release it shipped away
    assert not (root / "v8").exists()
