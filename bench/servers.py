"""Start the servers under test on 127.0.0.1: ours (``python -m app run``) and the reference ``cobra run``.

Each gets its own fresh ``redis-server`` (app.embedded_redis.RedisProcess) and the same apps.yaml, written
here: an app ``bench`` with one role holding every permission, plus the well-known apps the reference needs
(it looks up ``_stats`` for its statistics publisher at start-up).

CPU layout on a machine with at least two usable cores: the server process is pinned to the first core
(``--broker-cpus``), Redis and the load processes to the others (``--load-cpus``), so the server has a core to
itself and the load cannot steal from it. On one core nothing is pinned.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psutil
import yaml

from app.embedded_redis import RedisProcess, free_port

from .limits import raise_nofile
from .runner import Target

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SETUP = ROOT / "bench" / "reference" / "setup.sh"
PERMISSIONS = ["subscribe", "unsubscribe", "publish", "admin", "read", "write", "delete"]
BENCH_APP, BENCH_ROLE = "bench", "bench"


def default_cpu_layout() -> tuple[list[int] | None, list[int] | None]:
    """(broker cpus, load + Redis cpus): first usable core for the server, the rest for everything else."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None
    return usable[:1], usable[1:]


def write_apps_yaml(path: Path) -> dict[str, str]:
    """An apps.yaml in the Cobra format both servers read; returns {app key: secret of its role}."""
    apps, secret_of = {}, {}
    roles = ((BENCH_APP, BENCH_ROLE), ("_health", "health"), ("_pubsub", "pubsub"), ("_stats", "stats"))
    for key, role in roles:
        secret = secrets.token_hex(16)
        apps[key] = {"roles": {role: {"secret": secret, "permissions": PERMISSIONS}}}
        secret_of[key] = secret
    path.write_text(yaml.safe_dump({"apps": apps}, sort_keys=True))
    return secret_of


def snapshot(rev: str) -> tuple[Path, str]:
    """A pristine copy of the broker at git revision ``rev`` (under .state/bench-src/), and its commit id.

    The working tree may be mid-edit; measuring a commit makes a number reproducible and citable.
    """
    command = ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"]
    sha = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    dest = ROOT / ".state" / "bench-src" / sha
    if not dest.exists():
        partial = dest.with_name(sha + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        partial.mkdir(parents=True)
        archive = subprocess.Popen(["git", "archive", sha], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(partial)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {sha} failed")
        partial.rename(dest)
    return dest, sha


def find_pid_listening(port: int) -> int | None:
    """The pid of the process with a TCP socket listening on ``port`` (needs permission to see it)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def wait_http_ok(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class ServerProcess:
    """A server process under test and its Redis, started for one benchmark and stopped after it: what ours,
    the reference and nginx + nchan (:mod:`.nchan`) share. A subclass builds the command in ``start``."""

    kind: str
    workdir: Path
    broker_cpus: list[int] | None = None
    load_cpus: list[int] | None = None
    port: int = field(default_factory=free_port)
    redis: RedisProcess | None = None
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> Self:
        raise NotImplementedError

    def _start_redis(self, directory: Path) -> RedisProcess:
        """A fresh Redis for the server, on the load cores. No AOF: the race is about the servers, not
        about disk fsync."""
        self.redis = RedisProcess(directory, extra_args=["--appendonly", "no"])
        self.redis.start()
        if self.load_cpus:
            os.sched_setaffinity(self.redis.process.pid, self.load_cpus)
        return self.redis

    def _launch(
        self,
        command: list[str],
        timeout: float,
        ready: Callable[[float], None],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log_output: bool = False,
        pin: bool = False,
    ) -> None:
        """Start ``command`` with its open-files limit raised (its output appended to ``log_path`` with
        ``log_output``, else dropped; on ``broker_cpus`` with ``pin``), then wait until it answers /health/
        and ``ready(timeout)`` returns; stops everything when it does not."""
        log = open(self.log_path, "ab") if log_output else None  # noqa: SIM115 - closed once handed over
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,  # a worker that drops root could not raise it itself
        )
        if log is not None:
            log.close()
        if pin and self.broker_cpus:
            os.sched_setaffinity(self.process.pid, self.broker_cpus)
        try:
            wait_http_ok(f"http://127.0.0.1:{self.port}/health/", self.process, timeout, self.log_path)
            ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: each server's fast shutdown (nginx's worker exits with it)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalServer(ServerProcess):
    """Ours or the reference: ``kind`` is "ours" | "reference" | "gunicorn1", "gunicorn2"... (ours under
    gunicorn, N workers)."""

    secret: str = ""
    source: Path = ROOT  # the checkout ``python -m app run`` runs from (see snapshot())
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. COBRA_* settings for an experiment

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}-server.log"

    def target(self) -> Target:
        assert self.process is not None and self.redis is not None and self.redis.process is not None
        return Target(
            name=self.kind,
            endpoint=self.endpoint,
            appkey=BENCH_APP,
            role=BENCH_ROLE,
            secret=self.secret,
            broker_pid=self.process.pid,
            redis_pid=self.redis.process.pid,
        )

    def start(self, timeout: float = 60.0) -> LocalServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        apps_yaml = self.workdir / "apps.yaml"
        self.secret = write_apps_yaml(apps_yaml)[BENCH_APP]
        self._start_redis(self.workdir / f"{self.kind}-redis")
        command, env = self._command(apps_yaml)
        ready = self._wait_started
        self._launch(command, timeout, ready, cwd=self.source, env=env, log_output=True, pin=True)
        return self

    def _wait_started(self, timeout: float) -> None:
        if self.kind.startswith("gunicorn"):
            self._wait_workers(int(self.kind.removeprefix("gunicorn") or "1"), timeout)
        time.sleep(1.0)  # /health/ answers before either server has connected to Redis

    def _wait_workers(self, count: int, timeout: float) -> None:
        """Until gunicorn has forked ``count`` workers and each has served /health/ (its broker is up)."""
        deadline = time.monotonic() + timeout
        while len(psutil.Process(self.process.pid).children()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn did not fork {count} workers:\n{self.log_path.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        time.sleep(2.0)  # each worker connects to Redis and loads the config after the fork

    def _command(self, apps_yaml: Path) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_") and k != "REDIS_URL"}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        assert self.redis is not None
        if self.kind.startswith("gunicorn"):
            # Ours under gunicorn with N CobraWorker processes (gunicorn.conf.py); they meet in this Redis,
            # so a delivery to a subscriber of another worker crosses Redis Pub/Sub.
            env.update(REDIS_URL=self.redis.url, COBRA_STATE_DIR=str(self.workdir / "ours-state"))
            env.update(COBRA_APPS_CONFIG=str(apps_yaml), COBRA_LOG_LEVEL="WARNING")
            env.pop("WEB_CONCURRENCY", None)
            workers = self.kind.removeprefix("gunicorn") or "1"
            command = [sys.executable, "-m", "gunicorn", "-c", str(self.source / "gunicorn.conf.py")]
            command += ["-w", workers, "--worker-connections", "200000", "--backlog", "4096"]
            return [*command, "-b", f"127.0.0.1:{self.port}", "--no-control-socket", "wsgi:application"], env
        if self.kind == "ours":
            env.update(REDIS_URL=self.redis.url, COBRA_STATE_DIR=str(self.workdir / "ours-state"))
            # every load process connects from 127.0.0.1, 100 handshakes at a time each: the per-address
            # cap of unauthenticated sockets (64, meant for strangers on the internet) would refuse them
            env.setdefault("COBRA_PREAUTH_MAX_PER_IP", "0")
            # WARNING: both servers log at the reference's default level, so neither pays for per-connection
            # INFO lines on the hot path.
            command = [sys.executable, "-m", "app", "run", "--port", str(self.port), "--log-level", "WARNING"]
            return [*command, "--apps-config", str(apps_yaml)], env
        venv = Path(
            subprocess.run([str(REFERENCE_SETUP)], check=True, capture_output=True, text=True).stdout.strip()
        )
        env["COBRA_APPS_CONFIG"] = str(apps_yaml)
        redis_url = f"redis://127.0.0.1:{self.redis.port}"  # rcc wants no database suffix
        command = [str(venv / "bin" / "cobra"), "run", "--port", str(self.port), "--redis_urls", redis_url]
        return [*command, "--apps_config_path", str(apps_yaml)], env
