"""The RabbitMQ backend against the real local broker (in a vhost of the suite's own): same result as in-process,
the faults it survives, and bad broker settings refused at start."""
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import torch
from search_common import SEARCHING, TINY, journal_results, main_cmd, write_operations
from search_mq import HOST, PORT, Server, broker, queues, rabbitmqctl  # noqa: F401  (fixtures)

from anglenas.checkpoint import save_checkpoint
from anglenas.config import parse_config
from anglenas.data import DataConfig
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.operations import load_operations
from anglenas.searchers.spos import server as test_server
from anglenas.searchers.spos.evaluate import CandidateEvaluator
from anglenas.searchers.spos.messages import decode_request, encode, make_request, make_result, weights_fingerprint
from anglenas.searchers.spos.mq import RabbitEvaluator, check_broker, resolve_broker
from anglenas.searchers.spos.search import Search, SearchConfig
from anglenas.spaces import get_space
from anglenas.spaces.mobilenet.supernet import MobileSuperNet

pytestmark = pytest.mark.usefixtures("broker")


def _run(cfg):
    """The search of ``cfg`` in its operations file: its :class:`SearchResult`."""
    return Search(cfg, load_operations(cfg.operations_path)).run()


def _cfg(save, ops, *extra):
    cfg = parse_config(SearchConfig, TINY + ["--max_epochs", "2", "--operations_path", str(ops), "--save", str(save),
                                             *extra])
    return dataclasses.replace(cfg, **dataclasses.asdict(resolve_broker(cfg)))


class Background(threading.Thread):
    """``_run(cfg)`` in a thread; ``join_result`` re-raises its error."""

    def __init__(self, cfg):
        super().__init__(daemon=True)
        self.cfg, self.result, self.error = cfg, None, None
        self.start()

    def run(self):
        try:
            self.result = _run(self.cfg)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def join_result(self, timeout=240):
        self.join(timeout)
        assert not self.is_alive(), "the search did not finish"
        if self.error:
            raise self.error
        return self.result


def _wait(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sent(save):
    path = save / "evaluations.jsonl"
    return path.read_text().count('"event": "sent"') if path.is_file() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The operations file and the in-process result of the tiny 2-generation search every test repeats."""
    tmp = tmp_path_factory.mktemp("reference")
    ops = write_operations(tmp / "ops.json")
    return ops, _run(_cfg(tmp / "local", ops))


def _assert_same_search(doc, ref, save):
    assert (doc.archs, doc.scores) == (ref.archs, ref.scores)
    assert doc.details["generations"] == ref.details["generations"]
    evaluated = journal_results(save)
    assert len(evaluated) == len(set(evaluated)), "a candidate was recorded twice"


def test_two_test_servers_give_the_in_process_result(tmp_path, queues, reference):
    ops, ref = reference
    servers = [Server(queues, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        doc = _run(_cfg(tmp_path / "mq", ops, "--backend", "rabbitmq", *queues.flags))
        _assert_same_search(doc, ref, tmp_path / "mq")
        assert all(s.proc.poll() is None for s in servers)
    finally:
        for s in servers:
            s.stop()
    assert sum(s.text().count("done:") for s in servers) == len(journal_results(tmp_path / "mq"))
    assert queues.drain(queues.dead) == []


def _unacked(queues) -> int:
    out = rabbitmqctl("list_queues", "-q", "-p", queues.vhost, "name", "messages_unacknowledged").stdout
    return sum(int(n) for name, n in (line.split() for line in out.splitlines() if line.strip())
               if name == queues.request)


def _freeze_holding_a_request(server, queues) -> None:
    """SIGSTOP the server at a moment when it holds an un-acked request (checked on the broker)."""
    server.wait_for("evaluating")
    while True:
        os.kill(server.proc.pid, signal.SIGSTOP)
        if _unacked(queues) == 1:
            return
        os.kill(server.proc.pid, signal.SIGCONT)  # caught between two requests: try again
        time.sleep(0.05)


@pytest.mark.slow
def test_server_killed_mid_evaluation_started_late_and_restarted(tmp_path, queues, reference):
    ops, ref = reference
    save = tmp_path / "mq"
    search = Background(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags))
    _wait(lambda: _sent(save) >= 6, what="the first generation's requests")  # queued before any server runs
    first = Server(queues, tmp_path / "first.log")
    second = None
    try:
        _freeze_holding_a_request(first, queues)
        first.stop()  # SIGKILL: the broker redelivers the request
        second = Server(queues, tmp_path / "second.log")
        doc = search.join_result()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    _assert_same_search(doc, ref, save)
    assert "redelivered" in second.text()
    assert first.text().count("done:") + second.text().count("done:") >= len(journal_results(save))


@pytest.mark.slow
def test_killed_search_waits_for_its_outstanding_requests_instead_of_re_sending(tmp_path, queues, reference):
    ops, ref = reference
    save = tmp_path / "mq"
    proc = subprocess.Popen(main_cmd(save, ops, "--max_epochs", "2", "--backend", "rabbitmq", *queues.flags),
                            cwd=SEARCHING, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(lambda: _sent(save) >= 6 or proc.poll() is not None, what="the first generation's requests")
    finally:
        proc.kill()
        proc.wait()
    assert _sent(save) == 6, proc.stderr.read().decode()[-2000:]
    server = Server(queues, tmp_path / "server.log")  # answers while the search is down
    try:
        server.wait_for("candidate 6 done")
        doc = _run(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags))
    finally:
        server.stop()
    _assert_same_search(doc, ref, save)
    assert _sent(save) == len(journal_results(save)) == server.text().count("done:")


@pytest.mark.slow
def test_search_survives_the_broker_dropping_its_connection(tmp_path, queues, reference):
    """The broker closes every connection of the suite's vhost while the search waits for results (as in a broker
    restart); the search reconnects and ends with the in-process result."""
    ops, ref = reference
    save = tmp_path / "mq"
    search = Background(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags))
    first = Server(queues, tmp_path / "first.log", "--max_requests", "2")
    second = None
    try:
        assert first.proc.wait(timeout=240) == 0, first.text()  # the search now waits for the other results
        rabbitmqctl("close_all_connections", "-p", queues.vhost, "anglenas test: connections dropped")
        _wait(lambda: "reconnecting" in (save / "log.txt").read_text(), what="the search's reconnection")
        second = Server(queues, tmp_path / "second.log")
        doc = search.join_result()
    finally:
        if second is not None:
            second.stop()
    _assert_same_search(doc, ref, save)
    assert f"lost RabbitMQ {HOST}:{PORT}" in (save / "log.txt").read_text()


def _weights(path, seed):
    torch.manual_seed(seed)
    model = MobileSuperNet(get_space("gpu").scaled(0.25, 32, 10, 2))
    save_checkpoint({"model": model.state_dict()}, path)
    return weights_fingerprint(path)


def test_server_dead_letters_bad_messages_keeps_running_and_reloads_changed_weights(tmp_path, queues):
    server = Server(queues, tmp_path / "server.log")
    weights = tmp_path / "supernet.pt"
    settings = _cfg(tmp_path / "x", "unused").eval_settings("gpu")
    arch = [0, 4, 2, 1, 0, 1, 2, 1, 0, 4, 1, 5, 0, 1, 2, 1, 0, 4, 1, 4, 0]
    try:
        fp_a = _weights(weights, 0)
        torch.set_num_threads(1)
        direct = CandidateEvaluator(settings, DataConfig(dataset="embedded", workers=0), "cpu")
        direct.load(weights)
        top1_a = direct(arch)

        def request(rid, fp):
            return encode(make_request(rid, arch, str(weights), fp, settings.to_dict(), queues.result))

        bad_version = json.loads(request("v", fp_a))
        bad_version["version"] = 2
        short = json.loads(request("s", fp_a))
        short["arch"] = arch[:5]
        conn, ch = queues.channel()
        for body in (b"\x80\x04not json", b'{"format": "other", "version": 1}', json.dumps(bad_version).encode(),
                     json.dumps(short).encode(), request("r1", fp_a)):
            ch.basic_publish("", queues.request, body)
        conn.close()
        results = []
        _wait(lambda: results.extend(queues.drain(queues.result)) or results, what="the first result")
        server.wait_for("candidate 1 done")  # idle now, waiting for requests
        rabbitmqctl("close_all_connections", "-p", queues.vhost, "anglenas test: connections dropped")
        server.wait_for(f"lost RabbitMQ {HOST}:{PORT}")
        fp_b = _weights(weights, 1)  # the search retrained: the server must reload
        conn, ch = queues.channel()
        ch.basic_publish("", queues.request, request("r2", fp_b))
        ch.basic_publish("", queues.request, request("r3", fp_a))  # weights gone: stale
        conn.close()
        _wait(lambda: results.extend(queues.drain(queues.result)) or len(results) == 2, what="the second result")
        dead = []
        _wait(lambda: dead.extend(queues.drain(queues.dead)) or len(dead) >= 5, what="five dead letters")
        assert server.proc.poll() is None
    finally:
        server.stop()
    direct.load(weights)
    top1_b = direct(arch)
    got = {json.loads(body)["id"]: json.loads(body) for _, body in results}
    assert got["r1"]["top1"] == top1_a and got["r1"]["fingerprint"] == fp_a
    assert got["r2"]["top1"] == top1_b and got["r2"]["fingerprint"] == fp_b
    reasons = [headers["x-anglenas-reason"] for headers, _ in dead]
    assert len(reasons) == 5
    for needle in ("not JSON", "unknown format", "version 2", "21", "stale weights"):
        assert any(needle in r for r in reasons), (needle, reasons)
    assert server.text().count("loading weights") == 2


def test_search_keeps_one_result_per_candidate_and_ignores_stale_ones(queues):
    """A fake test server answers each request with a stale result, the real one, then a duplicate."""
    broker = resolve_broker(parse_config(SearchConfig, queues.flags))
    archs = [(0, 1, 2), (3, 4, 5), (1, 1, 1)]
    sent = []
    evaluator = RabbitEvaluator(broker, "/w.pt", "fp-now", {}, RunLogger(None, enabled=False),
                                on_sent=lambda arch, rid: sent.append((arch, rid)))

    def fake_server():
        conn, ch = queues.channel()
        served = 0
        while served < len(archs):
            method, _props, body = ch.basic_get(queues.request, auto_ack=True)
            if method is None:
                time.sleep(0.01)
                continue
            req = decode_request(body)
            real = float(sum(req["arch"]))
            for fp, top1 in (("fp-old", 99.0), ("fp-now", real), ("fp-now", 1.0)):
                ch.basic_publish("", req["reply_to"], encode(make_result({**req, "fingerprint": fp}, top1, 0.1,
                                                                         "fake", False)))
            served += 1
        conn.close()

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    got = []
    evaluator.evaluate(archs, lambda arch, top1: got.append((arch, top1)))
    thread.join(30)
    evaluator.close()
    assert sorted(got) == sorted((a, float(sum(a))) for a in archs)
    assert sorted(a for a, _ in sent) == sorted(archs)
    assert evaluator.dropped["stale"] == 3 and evaluator.dropped["duplicate"] == 2  # the last one stays queued


def test_a_request_is_journaled_only_after_the_broker_confirmed_it(queues):
    """A search killed right when it journals a request: the request must already be on the broker, so the
    resumed search, which waits for every journaled request, never waits for one that was never published."""
    broker = resolve_broker(parse_config(SearchConfig, queues.flags))
    on_broker = []

    def journal_then_killed(arch, request_id):
        on_broker.extend(decode_request(body)["id"] for _, body in queues.drain(queues.request))
        on_broker.append(request_id)
        raise KeyboardInterrupt  # the kill, before anything else happens

    evaluator = RabbitEvaluator(broker, "/w.pt", "fp", {}, RunLogger(None, enabled=False),
                                on_sent=journal_then_killed)
    with pytest.raises(KeyboardInterrupt):
        evaluator.evaluate([(0, 1, 2)], lambda arch, top1: None)
    evaluator.close()
    assert len(on_broker) == 2 and on_broker[0] == on_broker[1]


def parse_with_broker_flags(cls, flags):
    cfg = parse_config(cls, flags, presets={"demo": test_server.DEMO})
    return dataclasses.replace(cfg, **dataclasses.asdict(resolve_broker(cfg)))


def _broker_cfg(queues, *flags):
    return resolve_broker(parse_config(SearchConfig, [*queues.flags, *flags]))


def _server_cfg(queues, *flags):
    return parse_with_broker_flags(test_server.ServerConfig, [*queues.flags, "--demo", *flags])


def test_bad_password_stops_search_and_test_server_at_start(queues):
    lines = []
    with pytest.raises(UserError, match=f"^RabbitMQ {HOST}:{PORT} .* refused the login"):
        check_broker(_broker_cfg(queues, "--mq_password", "wrong"), lines.append)  # the search's first call
    conn, ch = queues.channel()
    ch.basic_publish("", queues.request, b"a request that must stay queued")
    conn.close()
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"^RabbitMQ {HOST}:{PORT} .* refused the login"):
        test_server.TestServer(_server_cfg(queues, "--mq_password", "wrong")).serve()
    assert time.monotonic() - t0 < 10 and queues.count(queues.request) == 1


def test_unreachable_broker_is_named_in_every_message_and_given_up_at_start(queues):
    lines = []
    cfg = _broker_cfg(queues, "--mq_port", "1")  # nothing listens on port 1
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"cannot reach RabbitMQ {HOST}:1 "):
        check_broker(cfg, lines.append, retry_for=1.0)
    assert time.monotonic() - t0 < 30
    assert lines and all(f"RabbitMQ {HOST}:1 " in line for line in lines)


def test_test_server_without_its_data_folder_fails_at_start(tmp_path, queues):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(UserError) as err:
        test_server.TestServer(_server_cfg(queues, "--dataset", "imagenet", "--train_dir", str(missing)))
    assert str(err.value) == f"--train_dir {missing} does not exist on this host; pass the folder of the search's " \
                             f"data (--dataset imagenet)"


@contextlib.contextmanager
def _interruptible_children():
    """Children started here get Python's Ctrl-C handler even when this run ignores SIGINT (a background job)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_ctrl_c_stops_a_test_server_in_one_line_and_hands_its_request_back(tmp_path, queues):
    with _interruptible_children():
        idle = Server(queues, tmp_path / "idle.log")
        busy = Server(queues, tmp_path / "busy.log", "--weights_wait", "300")
    try:
        idle.wait_for("serving queue")
        busy.wait_for("serving queue")
        idle.proc.send_signal(signal.SIGINT)
        assert idle.proc.wait(60) == 130
        # a request whose weights file does not exist yet: the server holds it while it waits for the file
        settings = _cfg(tmp_path / "x", "unused").eval_settings("gpu")
        arch = [0, 4, 2, 1, 0, 1, 2, 1, 0, 4, 1, 5, 0, 1, 2, 1, 0, 4, 1, 4, 0]
        body = encode(make_request("held", arch, str(tmp_path / "later.pt"), "f" * 16, settings.to_dict(),
                                   queues.result))
        conn, ch = queues.channel()
        ch.basic_publish("", queues.request, body)
        conn.close()
        busy.wait_for("preparing data and model")
        assert queues.count(queues.request) == 0  # taken (unacked)
        t0 = time.monotonic()
        busy.proc.send_signal(signal.SIGINT)
        assert busy.proc.wait(60) == 130 and time.monotonic() - t0 < 30  # not after the 300 s weights wait
    finally:
        idle.stop()
        busy.stop()
    for server, back in ((idle, ""), (busy, "; the request it held went back to the queue")):
        text = server.text()
        assert "interrupted outside a training loop" not in text and "Traceback" not in text
        assert text.splitlines()[-1] == \
            f"stopped: test server {socket.gethostname()}:{server.proc.pid} (0 requests served){back}"
    conn, ch = queues.channel()
    method, _props, requeued = ch.basic_get(queues.request, auto_ack=True)
    conn.close()
    assert requeued == body and method.redelivered
