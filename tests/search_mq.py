"""Helpers of the RabbitMQ tests: a vhost of the suite's own on the local broker, unique queues, test servers.

The suite never stops, restarts or reconfigures a broker beyond its vhost: it creates ``anglenas_test_<tag>`` with
``rabbitmqctl add_vhost`` / ``set_permissions`` for the guest user and deletes it at the end.
"""
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import pytest
from search_common import SEARCHING

HOST = os.environ.get("ANGLENAS_TEST_MQ_HOST", "127.0.0.1")
PORT = 5672
USER = PASSWORD = "guest"


def broker_available() -> bool:
    try:
        pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, connection_attempts=1)).close()
        return True
    except pika.exceptions.AMQPError:
        return False


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    """Run ``rabbitmqctl``; a failure fails the test with its output."""
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def broker():
    """The vhost of this test session on the local broker (created here, deleted at the end).

    A missing broker fails these tests (CI starts it), unless ANGLENAS_SKIP_BROKER_TESTS=1.
    """
    if not broker_available():
        message = f"no RabbitMQ at {HOST}:{PORT} (guest/guest)"
        if os.environ.get("ANGLENAS_SKIP_BROKER_TESTS") == "1":
            pytest.skip(message)
        pytest.fail(f"{message}: start it with `rabbitmq-server -detached`, or set ANGLENAS_SKIP_BROKER_TESTS=1 "
                    f"to skip")
    vhost = f"anglenas_test_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def connect(vhost: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(HOST, PORT, vhost,
                                                             pika.PlainCredentials(USER, PASSWORD)))


class Queues:
    """Three queue names unique to one test in the session's vhost; ``flags`` for the command lines."""

    def __init__(self, vhost: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.vhost = vhost
        self.request, self.result, self.dead = f"t_req_{tag}", f"t_res_{tag}", f"t_dlq_{tag}"
        self.flags = ["--mq_host", HOST, "--mq_port", str(PORT), "--mq_user", USER, "--mq_password", PASSWORD,
                      "--mq_vhost", vhost, "--request_queue", self.request, "--result_queue", self.result,
                      "--dead_letter_queue", self.dead]

    def channel(self):
        conn = connect(self.vhost)
        ch = conn.channel()
        for q in (self.request, self.result, self.dead):
            ch.queue_declare(q, durable=True)
        return conn, ch

    def drain(self, queue: str) -> list[tuple[dict, bytes]]:
        """All messages of ``queue`` as (headers, body), acked."""
        conn, ch = self.channel()
        out = []
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            out.append((props.headers or {}, body))
        conn.close()
        return out

    def count(self, queue: str) -> int:
        """Messages ready in ``queue``."""
        conn, ch = self.channel()
        n = ch.queue_declare(queue, durable=True, passive=True).method.message_count
        conn.close()
        return n

    def delete(self) -> None:
        conn = connect(self.vhost)
        ch = conn.channel()
        for q in (self.request, self.result, self.dead):
            ch.queue_delete(q)
        conn.close()


@pytest.fixture
def queues(broker):
    q = Queues(broker)
    yield q
    q.delete()


class Server:
    """A ``searching/test_server.py --demo`` subprocess logging to a file."""

    def __init__(self, queues: Queues, log: Path, *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(SEARCHING / "test_server.py"), "--demo", "--threads", "1",
                                      "--weights_wait", "1", *queues.flags, *extra], cwd=log.parent,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.proc.poll() is None, f"server exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {needle!r} in the server log:\n{self.text()[-3000:]}"
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
