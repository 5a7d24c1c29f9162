"""The RabbitMQ backend against the real local broker: same result as in-process, and the faults it survives."""
import dataclasses
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import torch

from anglenas.checkpoint import save_checkpoint
from anglenas.config import parse_config
from anglenas.data import DataConfig
from anglenas.nn import MobileSuperNet
from anglenas.search.evaluate import CandidateEvaluator
from anglenas.search.messages import encode, make_request, weights_fingerprint
from anglenas.search.mq import resolve_broker
from anglenas.search.run import Search, SearchConfig
from anglenas.spaces import get_space
from search_common import SEARCHING, TINY, journal_results, main_cmd, write_operations
from search_mq import Server, broker, queues  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("broker")


def _cfg(save, ops, *extra):
    cfg = parse_config(SearchConfig, TINY + ["--max_epochs", "2", "--operations_path", str(ops), "--save", str(save),
                                             *extra])
    return dataclasses.replace(cfg, **dataclasses.asdict(resolve_broker(cfg)))


class Background(threading.Thread):
    """``Search(cfg).run()`` in a thread; ``join_result`` re-raises its error."""

    def __init__(self, cfg):
        super().__init__(daemon=True)
        self.cfg, self.result, self.error = cfg, None, None
        self.start()

    def run(self):
        try:
            self.result = Search(self.cfg).run()
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
    return ops, Search(_cfg(tmp / "local", ops)).run()


def _assert_same_search(doc, ref, save):
    assert doc["top"] == ref["top"] and doc["generations"] == ref["generations"]
    evaluated = journal_results(save)
    assert len(evaluated) == len(set(evaluated)), "a candidate was recorded twice"


def test_two_test_servers_give_the_in_process_result(tmp_path, queues, reference):
    ops, ref = reference
    servers = [Server(queues, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        doc = Search(_cfg(tmp_path / "mq", ops, "--backend", "rabbitmq", *queues.flags)).run()
        _assert_same_search(doc, ref, tmp_path / "mq")
        assert all(s.proc.poll() is None for s in servers)
    finally:
        for s in servers:
            s.stop()
    assert sum(s.text().count("done:") for s in servers) == len(journal_results(tmp_path / "mq"))
    assert queues.drain(queues.dead) == []


def test_server_killed_mid_evaluation_started_late_and_restarted(tmp_path, queues, reference):
    ops, ref = reference
    save = tmp_path / "mq"
    search = Background(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags))
    _wait(lambda: _sent(save) >= 6, what="the first generation's requests")  # queued before any server runs
    first = Server(queues, tmp_path / "first.log")
    second = None
    try:
        first.wait_for("evaluating")
        os.kill(first.proc.pid, signal.SIGSTOP)  # frozen mid-evaluation, its request un-acked
        assert "done:" not in first.text()
        first.stop()  # SIGKILL: the broker redelivers the request
        second = Server(queues, tmp_path / "second.log")
        doc = search.join_result()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    _assert_same_search(doc, ref, save)
    assert "redelivered" in second.text()
    assert second.text().count("done:") == len(journal_results(save))


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
        doc = Search(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags)).run()
    finally:
        server.stop()
    _assert_same_search(doc, ref, save)
    assert _sent(save) == len(journal_results(save)) == server.text().count("done:")


def _rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", *args], check=False, capture_output=True, timeout=120)


@pytest.mark.skipif(os.environ.get("ANGLENAS_NO_BROKER_RESTART") == "1",
                    reason="ANGLENAS_NO_BROKER_RESTART=1: the broker is shared")
def test_broker_restart_mid_search(tmp_path, queues, reference):
    ops, ref = reference
    save = tmp_path / "mq"
    server = Server(queues, tmp_path / "server.log")
    try:
        search = Background(_cfg(save, ops, "--backend", "rabbitmq", *queues.flags))
        _wait(lambda: (save / "evaluations.jsonl").is_file() and len(journal_results(save)) >= 2,
              what="the first results")
        try:
            _rabbitmqctl("stop_app")
            time.sleep(2)
        finally:
            _rabbitmqctl("start_app")
        doc = search.join_result()
        assert server.proc.poll() is None
    finally:
        server.stop()
        _rabbitmqctl("start_app")  # whatever happened, leave the broker running
    _assert_same_search(doc, ref, save)
    assert "reconnecting" in server.text()


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
        results = []
        _wait(lambda: results.extend(queues.drain(queues.result)) or results, what="the first result")
        fp_b = _weights(weights, 1)  # the search retrained: the server must reload
        ch.basic_publish("", queues.request, request("r2", fp_b))
        ch.basic_publish("", queues.request, request("r3", fp_a))  # weights gone: stale
        conn.close()
        _wait(lambda: results.extend(queues.drain(queues.result)) or len(results) == 2, what="the second result")
        _wait(lambda: "stale weights" in server.text(), what="the stale refusal")
        assert server.proc.poll() is None
    finally:
        server.stop()
    direct.load(weights)
    top1_b = direct(arch)
    got = {json.loads(body)["id"]: json.loads(body) for _, body in results}
    assert got["r1"]["top1"] == top1_a and got["r1"]["fingerprint"] == fp_a
    assert got["r2"]["top1"] == top1_b and got["r2"]["fingerprint"] == fp_b
    reasons = [headers["x-anglenas-reason"] for headers, _ in queues.drain(queues.dead)]
    assert len(reasons) == 5
    for needle in ("not JSON", "unknown format", "version 2", "21", "stale weights"):
        assert any(needle in r for r in reasons), (needle, reasons)
    assert server.text().count("loading weights") == 2


def test_search_keeps_one_result_per_candidate_and_ignores_stale_ones(queues):
    """A fake test server answers each request with a stale result, the real one, then a duplicate."""
    from anglenas.log import RunLogger
    from anglenas.search.messages import decode_request, make_result
    from anglenas.search.mq import RabbitEvaluator

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
