"""nginx + nchan as a benchmark target: the C pub/sub server a team would pick instead of our broker.

Debian's ``nginx`` with ``libnginx-mod-nchan`` (``scripts/install-bench-tools.sh`` installs them), one worker
process, in one of two modes: ``nchan-memory`` (nchan's shared-memory store, its fastest) or ``nchan-redis``
(messages go through a fresh Redis, like ours). Publishers POST to ``/pub/<channel>`` on keep-alive
connections, pipelined up to the scenario's window (each 2xx response is the acknowledgement); subscribers
are nchan WebSocket subscribers of ``/sub/<channel>``, which receive each message body as one text frame.
The message body is the same ``message`` object our publishers send, so sizes match.

The nginx master and its worker are both pinned (``taskset``) to the server's cores; the CPU counted is the
whole process tree's (the master is idle), read from /proc before and after the window.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .runner import Target
from .servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install-bench-tools.sh"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
NCHAN_KINDS = ("nchan-memory", "nchan-redis")
# Scenarios nchan cannot express: StreamSQL filters are ours only; idle connections need no server logic
# worth comparing (an nchan subscriber costs what its buffers cost).
NCHAN_UNSUPPORTED = frozenset({"filtered"})
NCHAN_BUFFER_LENGTH = 20_000  # messages kept per channel (see CONFIG); above every scenario's lag window

CONFIG = """\
load_module {module};
worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections {connections}; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  keepalive_requests 100000000;
  client_body_buffer_size 16k;
  nchan_max_reserved_memory 256M;
  # nchan sends a WebSocket subscriber what is still in the channel's buffer: with its default of 10
  # messages, a subscriber a few hundred messages behind silently misses the evicted ones. A deep buffer
  # (our broker also keeps a channel's recent history) makes every delivery count.
  nchan_message_buffer_length {buffer};
  nchan_message_timeout 120s;
  {upstream}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /health/ {{ return 200 "ok"; }}
    location ~ ^/pub/([^/]+)$ {{ nchan_publisher http; nchan_channel_id $1; {redis} }}
    location ~ ^/sub/([^/]+)$ {{ nchan_subscriber websocket; nchan_channel_id $1; {redis} }}
  }}
}}
"""


def nginx_binary() -> str:
    """The nginx binary; installs nginx + nchan first when missing (a benchmark tool, not a test one)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found and NCHAN_MODULE.exists():
        return found
    done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nginx + nchan are not available: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def write_config(path: Path, *, port: int, redis_url: str | None, connections: int = 200_000) -> None:
    upstream = f"upstream bench_redis {{ nchan_redis_server {redis_url}; }}" if redis_url else ""
    path.write_text(
        CONFIG.format(
            module=NCHAN_MODULE,
            nofile=connections + 1000,
            buffer=NCHAN_BUFFER_LENGTH,
            connections=connections,
            workdir=path.parent,
            port=port,
            upstream=upstream,
            redis="nchan_redis_pass bench_redis;" if redis_url else "",
        )
    )


@dataclass
class NchanServer(ServerProcess):
    """nginx + nchan (and, in Redis mode, its Redis): ``kind`` is "nchan-memory" | "nchan-redis"."""

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.workdir / "error.log"

    def target(self) -> Target:
        assert self.process is not None
        redis_pid = self.redis.process.pid if self.redis is not None and self.redis.process else None
        return Target(
            name=self.kind,
            endpoint=self.endpoint,
            appkey="",
            role="",
            secret="",
            broker_pid=self.process.pid,
            redis_pid=redis_pid,
            protocol="nchan",
        )

    def start(self, timeout: float = 30.0) -> NchanServer:
        if self.kind not in NCHAN_KINDS:
            raise ValueError(f"unknown nchan mode {self.kind!r}")
        binary = nginx_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        redis_url = None
        if self.kind == "nchan-redis":
            redis_url = f"redis://127.0.0.1:{self._start_redis(self.workdir / 'redis').port}"
        config = self.workdir / "nginx.conf"
        write_config(config, port=self.port, redis_url=redis_url)
        self.log_path.touch()
        pin = ["taskset", "-c", ",".join(map(str, self.broker_cpus))] if self.broker_cpus else []
        command = [*pin, binary, "-c", str(config), "-p", str(self.workdir), "-e", str(self.log_path)]
        self._launch(command, timeout, self._wait_worker)
        return self

    def _wait_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not psutil.Process(self.process.pid).children():
            if time.monotonic() > deadline:
                raise RuntimeError("nginx started no worker process")
            time.sleep(0.1)
