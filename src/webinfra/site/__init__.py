"""The site: the small message-board ASGI app that webinfra deploys on its app servers.

Modules:

* :mod:`webinfra.site.config` - :class:`SiteConfig`, the per-server JSON config.
* :mod:`webinfra.site.db` - asyncmy pools, read/write routing, failover, read-your-writes.
* :mod:`webinfra.site.entries` - the ``entries`` table's queries.
* :mod:`webinfra.site.validation` - pure validators for client input.
* :mod:`webinfra.site.routes` / :mod:`webinfra.site.app` - the Starlette app; run it with
  ``uvicorn webinfra.site.app:create_app --factory --loop uvloop --http httptools``.
* ``schema.sql`` - the schema, exposed by :func:`schema_sql` for the DB bootstrap.

Only the light-weight pieces are imported here, so the rest of webinfra can use
:func:`schema_sql` and `SiteConfig` without pulling in the web stack.

Self-contained: it imports nothing else of webinfra (import-linter), because `webinfra deploy` ships a copy
of it as a release that must not depend on the installed package.
"""

from __future__ import annotations

from importlib.resources import files

from webinfra.site.config import CONFIG_ENV, DBConfig, DBEndpoint, SiteConfig, load_config

__all__ = ["CONFIG_ENV", "DBConfig", "DBEndpoint", "SiteConfig", "load_config", "schema_sql"]


def schema_sql() -> str:
    """The site's schema (``CREATE TABLE IF NOT EXISTS ...``), to run with the site database selected."""
    return files(__name__).joinpath("schema.sql").read_text(encoding="utf-8")
