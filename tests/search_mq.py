"""Helpers of the RabbitMQ tests: unique queues on the local broker, test-server subprocesses."""
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


def broker_available() -> bool:
    try:
        pika.BlockingConnection(pika.ConnectionParameters(HOST, 5672, connection_attempts=1)).close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def broker() -> None:
    """The local broker. A missing one fails these tests (CI starts it), unless ANGLENAS_SKIP_BROKER_TESTS=1."""
    if broker_available():
        return
    message = f"no RabbitMQ at {HOST}:5672 (guest/guest)"
    if os.environ.get("ANGLENAS_SKIP_BROKER_TESTS") == "1":
        pytest.skip(message)
    pytest.fail(f"{message}: start it with `rabbitmq-server -detached`, or set ANGLENAS_SKIP_BROKER_TESTS=1 to skip")


class Queues:
    """Three queue names unique to one test; ``flags`` for the command lines; deleted by ``delete``."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.request, self.result, self.dead = f"t_req_{tag}", f"t_res_{tag}", f"t_dlq_{tag}"
        self.flags = ["--mq_host", HOST, "--request_queue", self.request, "--result_queue", self.result,
                      "--dead_letter_queue", self.dead]

    def channel(self):
        conn = pika.BlockingConnection(pika.ConnectionParameters(HOST, 5672))
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

    def delete(self) -> None:
        for _ in range(30):  # the broker may be coming back from a restart test
            try:
                conn = pika.BlockingConnection(pika.ConnectionParameters(HOST, 5672))
                ch = conn.channel()
                for q in (self.request, self.result, self.dead):
                    ch.queue_delete(q)
                conn.close()
                return
            except pika.exceptions.AMQPError:
                time.sleep(1)


@pytest.fixture
def queues():
    q = Queues()
    yield q
    q.delete()


class Server:
    """A ``test_server.py --demo`` subprocess logging to a file."""

    def __init__(self, queues: Queues, log: Path, *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(SEARCHING / "test_server.py"), "--demo", "--threads", "1",
                                      "--weights_wait", "1", *queues.flags, *extra], cwd=SEARCHING,
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
