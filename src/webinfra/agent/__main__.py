"""`python -m webinfra.agent --config /path/agent.json`: run one host's DB HA agent until
SIGTERM/SIGINT. Exit status 2 for a bad config, 1 if the API port cannot be bound."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from webinfra.agent.api import AgentHTTPServer, start_api
from webinfra.agent.config import load_config
from webinfra.agent.loop import Agent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webinfra.agent", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="agent.json rendered by webinfra")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"agent: bad config {args.config}: {exc}".replace("\n", " "), file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {config.host} agent %(levelname)s %(message)s",
    )
    # httpx logs every request at INFO: four per cycle would bury the decisions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = Agent(config)
    try:
        server = AgentHTTPServer(
            (config.listen_address, config.listen_port),
            lambda: agent.published,
            token=config.token,
            socket=config.mariadb.socket,
            workdir=config.mariadb.datadir.parent,
        )
    except OSError as exc:
        logging.error("cannot listen on %s:%d: %s", config.listen_address, config.listen_port, exc)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start_api(server)
    logging.info(
        "agent for %s in %s: API on %s:%d, etcd %s",
        config.host,
        config.cluster,
        config.listen_address,
        config.listen_port,
        ",".join(config.etcd_endpoints),
    )
    try:
        agent.run()
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
