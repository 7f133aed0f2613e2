"""SiteConfig loading and validation, and the packaged schema (no database needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from webinfra.site import CONFIG_ENV, SiteConfig, load_config, schema_sql


def example(password_file: str = "/abs/path/secrets/db-site.password") -> dict[str, Any]:
    return {
        "host": "web-01",
        "site_name": "www.foobar.com",
        "version": "1",
        "db": {
            "database": "site",
            "user": "site",
            "password_file": password_file,
            "writer": {"name": "web-01", "host": "198.18.0.11", "port": 3306},
            "readers": [{"name": "web-02", "host": "198.18.0.12", "port": 3306}],
            "ryw_wait_seconds": 0.5,
            "connect_timeout_seconds": 1.0,
            "pool_max_size": 10,
            "suspect_seconds": 2.0,
        },
    }


def test_documented_example_is_valid() -> None:
    config = SiteConfig.model_validate(example())
    assert config.host == "web-01"
    assert config.db.writer.name == "web-01"
    assert [r.name for r in config.db.readers] == ["web-02"]
    assert config.db.ryw_wait_seconds == 0.5


def test_readers_may_be_empty_and_defaults_apply() -> None:
    raw = example()
    raw["db"]["readers"] = []
    for key in ("ryw_wait_seconds", "connect_timeout_seconds", "pool_max_size", "suspect_seconds"):
        del raw["db"][key]
    config = SiteConfig.model_validate(raw)
    assert config.db.readers == []
    assert config.db.pool_max_size == 10


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("host",), "web 01"),  # ends up in a header
        (("host",), ""),
        (("version",), "1\r\nX-Evil: 1"),
        (("db", "password_file"), "relative/secret"),
        (("db", "writer", "port"), 0),
        (("db", "writer", "port"), 70000),
        (("db", "pool_max_size"), 0),
        (("db", "connect_timeout_seconds"), 0),
        (("db", "ryw_wait_seconds"), -1),
        (("db", "database"), "site; DROP"),
        (("db", "identify_servers"), "maybe"),
    ],
)
def test_invalid_values_are_rejected(path: tuple[str, ...], value: Any) -> None:
    raw = example()
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        SiteConfig.model_validate(raw)


def test_unknown_keys_are_rejected() -> None:
    raw = example()
    raw["db"]["ryw_wait"] = 1  # typo of ryw_wait_seconds must not be silently ignored
    with pytest.raises(ValidationError):
        SiteConfig.model_validate(raw)


def test_identify_servers_defaults_off_and_suits_the_ha_dbproxy() -> None:
    assert SiteConfig.model_validate(example()).db.identify_servers is False
    raw = example()
    # HA mode: endpoints are the local dbproxy's writer/reader ports, named by role.
    raw["db"]["writer"] = {"name": "dbproxy-writer", "host": "127.0.0.1", "port": 3307}
    raw["db"]["readers"] = [{"name": "dbproxy-reader", "host": "127.0.0.1", "port": 3308}]
    raw["db"]["identify_servers"] = True
    config = SiteConfig.model_validate_json(json.dumps(raw))
    assert config.db.identify_servers is True
    assert (config.db.writer.port, config.db.readers[0].port) == (3307, 3308)


def test_endpoint_names_must_be_unique() -> None:
    raw = example()
    raw["db"]["readers"] = [{"name": "web-01", "host": "198.18.0.12"}]
    with pytest.raises(ValidationError, match="unique"):
        SiteConfig.model_validate(raw)


def test_load_from_env_and_read_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "db-site.password"
    secret.write_text("s3cret pass\n")
    secret.chmod(0o600)
    path = tmp_path / "site.json"
    path.write_text(json.dumps(example(str(secret))))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config = load_config()
    assert config.site_name == "www.foobar.com"
    assert config.db.read_password() == "s3cret pass"


def test_load_without_env_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(RuntimeError, match=CONFIG_ENV):
        load_config()


def test_schema_sql() -> None:
    sql = schema_sql()
    assert "CREATE TABLE IF NOT EXISTS entries" in sql
    assert "utf8mb4" in sql
    upper = sql.upper()
    assert "CREATE DATABASE" not in upper and "USE " not in upper
