"""The smoke stage through RabbitMQ: the SPOS search with one ``searching/test_server.py`` (a subprocess, on fresh
queues deleted afterwards), when a broker answers at 127.0.0.1:5672."""
from __future__ import annotations

import contextlib
import socket
import time
import uuid
from pathlib import Path

from .check import Check, launch, stop

BROKER = ("127.0.0.1", 5672)
LABEL = "search (1 RabbitMQ test server)"


def broker_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(BROKER, timeout=2):
        return True
    return False


def smoke_rabbitmq(check: Check, stages: dict, search: list[str], smoke_dir: Path, stage_cap: float) -> None:
    """Run ``searching/main.py search --backend rabbitmq`` against one test server; its row in ``stages`` counts
    the evaluations the server made."""
    if not check.selected(LABEL):
        stages[LABEL] = {"status": "skipped: not selected by --smoke_stages"}
        return
    if not broker_reachable():
        stages[LABEL] = {"status": "skipped: no RabbitMQ broker answers at 127.0.0.1:5672"}
        return
    tag = uuid.uuid4().hex[:8]
    queues = {"--request_queue": f"gpucheck_req_{tag}", "--result_queue": f"gpucheck_res_{tag}",
              "--dead_letter_queue": f"gpucheck_dead_{tag}"}
    qflags = [x for kv in queues.items() for x in kv]
    log = check.work / "logs" / "test-server.txt"
    stages[LABEL] = {"status": "failed: the section's time cap came during this stage"}
    t0 = time.perf_counter()
    server = launch("searching/test_server.py", ["--demo", "--device", check.dev, "--threads", "1",
                                                 "--weights_wait", "1", *qflags], log)
    try:
        status = check.entry("searching/main.py", [*search, "--backend", "rabbitmq", *qflags, "--save",
                                                   str(smoke_dir / "search-mq")],
                             check.work / "logs" / "search-mq.txt", stage_cap)
        stages[LABEL] = {"status": status, "seconds": round(time.perf_counter() - t0, 1),
                         "evaluations by the server": log.read_text(errors="replace").count("evaluating ")}
    finally:
        stop(server, term_grace=15)
        delete_queues(list(queues.values()))
    check.write()


def delete_queues(names: list[str]) -> None:
    with contextlib.suppress(Exception):
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters(*BROKER, connection_attempts=1))
        channel = conn.channel()
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
        conn.close()
