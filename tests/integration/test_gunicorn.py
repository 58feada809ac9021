"""Many processes, one broker: real gunicorn, 2 of our gevent-websocket workers, one real Redis.

Each worker is a full broker node; the tests find out which worker holds a client from the handshake's
``node`` and check that publishes, the connection registry, disconnects and config changes cross workers.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
import uuid
from dataclasses import replace

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.client import CobraClient
from app.cluster import live_nodes
from app.config_store import ConfigStore
from app.models import App, Role
from tests.conftest import OTHER_APP, TEST_APP
from tests.support.gunicorn import (
    COBRA_WORKER,
    STOCK_WORKER,
    GunicornProcess,
    clients_on_every_worker,
    gunicorn_cluster,
    open_client,
)
from tests.support.processes import free_port, wait_until
from tests.support.raw_http import TLS_HELLO, send_raw

WORKERS = 2


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with gunicorn_cluster(tmp_path_factory.mktemp("gunicorn"), WORKERS) as running:
        yield running


@pytest.fixture(scope="module")
def redis_node(running):
    return running.redis


@pytest.fixture(scope="module")
def apps(running):
    return running.apps


@pytest.fixture(scope="module")
def cluster(running):
    return running.server


@pytest.fixture
def clients():
    opened: list[CobraClient] = []
    yield opened
    for client in opened:
        try:
            client.close()
        except Exception:
            pass


def secret(apps, role: str, app: str = TEST_APP) -> str:
    return apps[app].roles[role].secret


def per_worker(cluster, apps, clients, role: str = "pubsub", app: str = TEST_APP) -> dict[str, CobraClient]:
    by_node, every = clients_on_every_worker(cluster.endpoint, app, role, secret(apps, role, app), WORKERS)
    clients.extend(every)
    return by_node


def test_every_worker_is_a_broker_node_of_its_own(cluster, redis_node, apps, clients):
    by_node = per_worker(cluster, apps, clients)
    assert len(by_node) == WORKERS
    nodes = live_nodes(ConfigStore.from_url(redis_node.url).redis)
    assert set(by_node) <= set(nodes)
    assert {nodes[name]["pid"] for name in by_node} == set(cluster.worker_pids())
    assert all(nodes[name]["port"] == cluster.port for name in by_node)  # named after gunicorn's -b


def test_a_publish_on_one_worker_reaches_subscribers_on_every_worker(cluster, apps, clients):
    by_node = per_worker(cluster, apps, clients)
    channel = f"cross-{uuid.uuid4().hex[:8]}"
    for client in by_node.values():
        client.subscribe(channel)
    for sender_node, sender in by_node.items():
        message = {"from": sender_node}
        sender.publish(channel, message)
        for node, subscriber in by_node.items():
            push = subscriber.next_push()
            assert push["action"] == "rtm/subscription/data", (node, push)
            assert push["body"]["messages"] == [message]


def test_get_connections_lists_the_connections_of_every_worker(cluster, apps, clients):
    by_node = per_worker(cluster, apps, clients)
    targets = {node: client.connection_id for node, client in by_node.items()}
    stranger, _ = open_client(cluster.endpoint, OTHER_APP, "pubsub", secret(apps, "pubsub", OTHER_APP))
    clients.append(stranger)
    admin, _ = open_client(cluster.endpoint, TEST_APP, "admin", secret(apps, "admin"))
    clients.append(admin)

    def listed() -> list[str]:
        return admin.request("admin/get_connections")["body"]["connections"]

    # the registry of the other worker is flushed to Redis within a heartbeat (about a second)
    wait_until(lambda: set(targets.values()) <= set(listed()), message="connections of both workers listed")
    assert stranger.connection_id not in listed()  # still scoped to the caller's app


def test_close_connection_reaches_a_client_on_another_worker(cluster, apps, clients):
    admin, admin_node = open_client(cluster.endpoint, TEST_APP, "admin", secret(apps, "admin"))
    clients.append(admin)
    by_node = per_worker(cluster, apps, clients)
    (victim_node,) = [node for node in by_node if node != admin_node]
    victim = by_node[victim_node]

    def closed_by_admin() -> bool:
        reply = admin.request("admin/close_connection", {"connection_id": victim.connection_id}, check=False)
        return reply["action"] == "admin/close_connection/ok"

    wait_until(closed_by_admin, message="the other worker's connection is known")
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            victim.receive(timeout=10)
    assert closed.value.rcvd.code == 1000


def test_config_changes_reach_every_worker(cluster, redis_node, apps, clients):
    store = ConfigStore.from_url(redis_node.url)
    key = f"gunicorn-{uuid.uuid4().hex[:8]}"
    store.put_app(App(key=key, roles={"r": Role(name="r", secret="s" * 32)}))
    try:
        # a new app is accepted by both workers (each one reloads on the change notification)...
        by_node: dict[str, CobraClient] = {}

        def accepted_by_every_worker() -> bool:
            try:
                client, node = open_client(cluster.endpoint, key, "r", "s" * 32)
            except InvalidStatus:  # 403 from a worker that has not reloaded yet
                return False
            clients.append(client)
            by_node.setdefault(node, client)
            return len(by_node) == WORKERS

        wait_until(accepted_by_every_worker, timeout=30, message="new app accepted by both workers")
        assert all(client.publish("c", 1)["channels"] == ["c"] for client in by_node.values())
        # ...and a permission change applies to the live sessions of both
        store.update_app(
            key,
            lambda app: replace(app, roles={"r": replace(app.roles["r"], permissions=("subscribe",))}),
        )

        def denied(client: CobraClient) -> bool:
            reply = client.request("rtm/publish", {"channel": "c", "message": 1}, check=False)
            return reply["body"].get("code") == "permission_denied"

        for client in by_node.values():
            wait_until(lambda client=client: denied(client), message="publish permission withdrawn")
    finally:
        store.delete_app(key)


def test_our_worker_command_works_without_our_config_file_and_with_preload(
    redis_node, apps, tmp_path, clients
):
    """``-k app.gunicorn_worker.CobraWorker`` without gunicorn.conf.py, with --preload: the master imports
    wsgi.py but holds no Redis connection; each worker starts its own broker and closes its clients with
    1001."""
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    server = GunicornProcess(
        redis_node.url, tmp_path, WORKERS, args=["--preload"], config=empty, worker_class=COBRA_WORKER
    ).start()
    try:
        master = psutil.Process(server.pid)
        peers = [c.raddr.port for c in master.net_connections("tcp") if c.raddr]
        assert redis_node.port not in peers, "the master must not talk to Redis"
        by_node = per_worker(server, apps, clients)
        assert {node.rsplit(":", 1)[1] for node in by_node} == {str(pid) for pid in server.worker_pids()}
        with urllib.request.urlopen(server.http + "/ready/", timeout=10) as response:
            assert response.status == 200
    finally:
        assert server.stop() == 0
    for client in by_node.values():
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.receive(timeout=10)
        assert closed.value.rcvd.code == 1001


def test_the_stock_worker_command_serves_clients_without_patching(redis_node, apps, tmp_path, clients):
    """The stock ``-k geventwebsocket.gunicorn.workers.GeventWebSocketWorker`` without our config file, with
    --preload: its own handler upgrades, the application runs the upgraded socket with the broker's framing;
    clients on every worker authenticate, publish and receive what the others publish, and are closed with
    1001 when gunicorn stops."""
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    server = GunicornProcess(
        redis_node.url,
        tmp_path,
        WORKERS,
        args=["--preload", "--graceful-timeout", "2"],
        config=empty,
        worker_class=STOCK_WORKER,
    ).start(brokers_ready=False)
    try:
        master = psutil.Process(server.pid)
        peers = [c.raddr.port for c in master.net_connections("tcp") if c.raddr]
        assert redis_node.port not in peers, "the master must not talk to Redis"
        by_node = per_worker(server, apps, clients)  # connecting starts each worker's broker
        assert {node.rsplit(":", 1)[1] for node in by_node} == {str(pid) for pid in server.worker_pids()}
        assert all(client.ws.subprotocol == "json" for client in by_node.values())
        channel = f"stock-{uuid.uuid4().hex[:8]}"
        for client in by_node.values():
            client.subscribe(channel)
        for sender_node, sender in by_node.items():
            assert sender.publish(channel, {"from": sender_node})["channels"] == [channel]
            for subscriber in by_node.values():
                assert subscriber.next_push()["body"]["messages"] == [{"from": sender_node}]
        # the 101 is out before the broker sees the request: an unknown app key is refused by a close frame
        with pytest.raises(ConnectionClosed) as refused:
            CobraClient(server.endpoint, "no-such-app").receive(timeout=10)
        assert (refused.value.rcvd.code, refused.value.rcvd.reason) == (1008, "403 Forbidden: KO")
    finally:
        assert server.stop() == 0
    for client in by_node.values():  # the graceful stop of our lifecycle, adopted without patching
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.receive(timeout=10)
        assert closed.value.rcvd.code == 1001
    output = server.output()
    assert "served by gevent-websocket's own handler" in output  # says what it lacks, and what to use
    assert "geventwebsocket.handler" not in output  # no access lines unless asked


def test_the_stock_worker_command_without_preload_starts_brokers_before_any_request(
    redis_node, apps, tmp_path, clients
):
    """The README's bare stock command: each worker's broker starts after the fork, before any client (the
    fixture waits for every worker's "ready" line), and closes its clients with 1001 on SIGTERM."""
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    server = GunicornProcess(
        redis_node.url, tmp_path, WORKERS, config=empty, worker_class=STOCK_WORKER
    ).start()
    try:
        by_node = per_worker(server, apps, clients)
        assert {node.rsplit(":", 1)[1] for node in by_node} == {str(pid) for pid in server.worker_pids()}
    finally:
        assert server.stop() == 0
    for client in by_node.values():
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.receive(timeout=10)
        assert closed.value.rcvd.code == 1001


def test_json_logs_from_master_and_workers(redis_node, apps, tmp_path, clients):
    import json

    server = GunicornProcess(redis_node.url, tmp_path, 1, env={"COBRA_LOG_JSON": "1"}).start()
    try:
        with CobraClient(server.endpoint, TEST_APP) as client:
            reply = client.request("auth/handshake", {"method": "role_secret", "data": {"role": "pubsub"}})
            connection_id = reply["body"]["data"]["connection_id"]
            wrong = {"method": "role_secret", "credentials": {"hash": "AAAAAAAAAAAAAAAAAAAAAA=="}}
            client.request("auth/authenticate", wrong, check=False)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # each one JSON
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "app.broker"}
    assert len({line["pid"] for line in lines}) == 2  # master and worker
    assert any(line.get("connection_id") == connection_id for line in lines)
    assert all(secret(apps, "pubsub") not in json.dumps(line) for line in lines)


def test_an_unreachable_redis_at_start_up_stops_gunicorn_with_a_clear_message(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = GunicornProcess(url, tmp_path, 1, env={"COBRA_REDIS_WAIT_TIMEOUT": "1"}).launch()
    code = server.wait(60)
    server.stop()
    assert code != 0
    assert "cannot start the broker: the config Redis did not answer within 1s" in server.output()


def test_without_redis_url_gunicorn_stops_with_a_clear_message(tmp_path):
    server = GunicornProcess(None, tmp_path, 1).launch()
    code = server.wait(60)
    server.stop()
    assert code != 0
    assert "wsgi.py needs REDIS_URL" in server.output()


def test_plain_http_paths_are_served_by_the_workers(cluster):
    with urllib.request.urlopen(cluster.http + "/health/", timeout=10) as response:
        assert response.read() == b"OK\n"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(cluster.http + "/nothing-here", timeout=10)
    assert missing.value.code == 404


@pytest.mark.parametrize("access_log", [False, True], ids=["default", "COBRA_ACCESS_LOG"])
def test_access_lines_only_when_asked_and_escaped(redis_node, apps, tmp_path, access_log):
    env = {"COBRA_ACCESS_LOG": "1"} if access_log else {}
    server = GunicornProcess(redis_node.url, tmp_path, 1, env=env).start()
    tag = uuid.uuid4().hex
    try:
        for path in (f"/health/?{tag}", f"/admin/static/admin.css?{tag}"):
            with urllib.request.urlopen(server.http + path, timeout=10) as response:
                assert response.status == 200
                response.read()
        client, _ = open_client(f"{server.endpoint}?{tag}", TEST_APP, "pubsub", secret(apps, "pubsub"))
        client.close()
        assert send_raw(server.port, TLS_HELLO).startswith(b"HTTP/1.1 400")
    finally:
        assert server.stop() == 0  # every line is written by then
    output = server.output()
    assert "\x16" not in output
    lines = [line for line in output.splitlines() if tag in line]
    if not access_log:
        assert lines == []
        assert "app.access" not in output and "geventwebsocket.handler" not in output
        return
    assert len(lines) == 3 and all(" app.access: " in line for line in lines), lines
    assert [line.split('"')[1].split()[0] for line in lines] == ["GET"] * 3
    assert [line.split('"')[2].split()[0] for line in lines] == ["200", "200", "101"]
    (hello,) = [line for line in output.splitlines() if " app.access: " in line and '" 400 ' in line]
    assert '"\\x16\\x03\\x01\\x02' in hello and hello.isascii()


def test_a_quick_stop_still_closes_clients_with_1001(redis_node, apps, tmp_path):
    """SIGINT to the master is gunicorn's quick shutdown (SIGQUIT to the workers): our worker still closes
    its clients with 1001 and flushes, within about a second."""
    server = GunicornProcess(redis_node.url, tmp_path, 1).start()
    client, _ = open_client(server.endpoint, TEST_APP, "pubsub", secret(apps, "pubsub"))
    try:
        server.process.send_signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.receive(timeout=10)
        assert closed.value.rcvd.code == 1001
        server.wait(20)
    finally:
        client.close()
        server.stop()
    assert "shutting down: publishes flushed; closing 1 connection(s) with 1001" in server.output()
