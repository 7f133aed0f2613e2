"""apt-cacher-ng on the lab bridge's gateway address: the machines' only way to Debian packages, as a
mirror or proxy would be for real servers. It is webinfra's own instance (own config, cache and log
directories, PID tracked), never Debian's apt-cacher-ng service.

The machines' apt is pointed at it with `Acquire::http::Proxy`; it fetches from the mirror lines the image
was built with. http mirrors are cached; for https mirrors it tunnels CONNECT to those hosts only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from webinfra.runtime.emulated.process import TrackedProcess, alive, read_pidfile, stop_tracked, track, write_pidfile
from webinfra.testbed import LabError, LabUsageError

PROXY_PORT = 3142


def apt_proxy_conf(gateway: str, port: int = PROXY_PORT) -> str:
    """The machines' /etc/apt/apt.conf.d file: every http(s) fetch goes through the lab's proxy.

    No pipelining, a short timeout and retries: when several machines fetch the same index at once,
    apt-cacher-ng may fail one of them ("Failure to move file ... out of the way") or close a pipelined
    connection that apt's http method then never reads to its end (left in CLOSE-WAIT, the method waiting);
    both were seen as an `apt-get update` hanging for minutes in a cold `up` of five machines."""
    url = f"http://{gateway}:{port}/"
    return (
        "// webinfra lab: packages come through apt-cacher-ng on the bridge gateway\n"
        f'Acquire::http::Proxy "{url}";\n'
        f'Acquire::https::Proxy "{url}";\n'
        "// one request per connection, and a fetch the proxy leaves unanswered is given up and tried again\n"
        'Acquire::http::Pipeline-Depth "0";\n'
        'Acquire::http::Timeout "20";\n'
        'Acquire::Retries "5";\n'
    )


def https_hosts(mirror_lines: tuple[str, ...]) -> list[str]:
    hosts = []
    for line in mirror_lines:
        parts = urlsplit(line.split()[1])
        if parts.scheme == "https" and parts.hostname and parts.hostname not in hosts:
            hosts.append(parts.hostname)
    return hosts


def acng_conf(
    proxy_dir: Path, cache_dir: Path, gateway: str, mirror_lines: tuple[str, ...], port: int = PROXY_PORT
) -> str:
    """apt-cacher-ng's configuration: bound to the gateway only, everything under `proxy_dir`. No Remap
    rules: it caches by the URL the machines ask for, which is the mirror their sources.list names."""
    lines = [
        "# webinfra lab: apt-cacher-ng for the lab's machines (written by `webinfra lab up`)",
        f"CacheDir: {cache_dir}",
        f"LogDir: {proxy_dir / 'log'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"BindAddress: {gateway}",
        f"Port: {port}",
        f"SocketPath: {proxy_dir / 'socket'}",
        f"PidFile: {proxy_dir / 'acng.pid'}",
        "ForeGround: 1",
        "ReportPage: acng-report.html",
        "ExThreshold: 4",
        "UnbufferLogs: 1",
    ]
    hosts = https_hosts(mirror_lines)
    if hosts:
        pattern = "|".join(host.replace(".", r"\.") for host in hosts)
        lines.append(f"PassThroughPattern: ^({pattern}):443$")
    return "\n".join(lines) + "\n"


def blocking_listeners(ss_output: str, gateway: str, port: int = PROXY_PORT) -> list[str]:
    """From `ss -Hltn` output: the listening sockets that would keep apt-cacher-ng from binding
    gateway:port (the same address, or a wildcard one such as Debian's own apt-cacher-ng service)."""
    blocking = {f"{gateway}:{port}", f"0.0.0.0:{port}", f"*:{port}", f"[::]:{port}"}
    found = []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] in blocking:
            found.append(fields[3])
    return found


def check_port_free(gateway: str, port: int = PROXY_PORT) -> None:
    proc = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, timeout=10)
    taken = blocking_listeners(proc.stdout, gateway, port)
    if taken:
        raise LabUsageError(
            f"port {port} is taken on {', '.join(taken)} (Debian's apt-cacher-ng service?): the lab's proxy "
            f"needs {gateway}:{port}"
        )


@dataclass(frozen=True)
class PackageProxy:
    directory: Path  # config, log, socket and pid file; the cache can live elsewhere (kept across labs)
    cache: Path
    gateway: str
    port: int = PROXY_PORT

    @property
    def pidfile(self) -> Path:
        return self.directory / "apt-cacher-ng.json"

    def argv(self) -> list[str]:
        return ["apt-cacher-ng", "-c", str(self.directory)]

    def process(self) -> TrackedProcess | None:
        proc = read_pidfile(self.pidfile)
        return proc if alive(proc) else None

    def start(self, mirror_lines: tuple[str, ...], timeout: float = 30.0) -> bool:
        """Start it unless it already runs; wait until it accepts connections. True if started now."""
        if self.process() is not None:
            return False
        if shutil.which("apt-cacher-ng") is None:
            raise LabUsageError(
                "apt-cacher-ng is not installed (Debian package apt-cacher-ng; scripts/install-deps.sh --lab)"
            )
        check_port_free(self.gateway, self.port)
        (self.directory / "log").mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        conf = acng_conf(self.directory, self.cache, self.gateway, mirror_lines, self.port)
        (self.directory / "acng.conf").write_text(conf)
        with (self.directory / "log" / "stdout.log").open("ab") as out:
            child = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        write_pidfile(self.pidfile, track(child.pid, self.argv()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise LabError(f"apt-cacher-ng exited at start (code {child.returncode}): see {self.directory / 'log'}")
            if self.accepts():
                return True
            time.sleep(0.1)
        raise LabError(f"apt-cacher-ng did not listen on {self.gateway}:{self.port} within {timeout:.0f}s")

    def accepts(self) -> bool:
        try:
            with socket.create_connection((self.gateway, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> bool:
        return stop_tracked(read_pidfile(self.pidfile), timeout=10.0)
