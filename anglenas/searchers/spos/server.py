"""The test server: consumes evaluation requests from RabbitMQ, evaluates them, publishes the results.

One request at a time (prefetch 1). The evaluation runs in a worker thread while the connection keeps serving
heartbeats; the request is acked only after its result is confirmed by the broker, so a server killed at any
moment leaves its request to be redelivered to another server. A message that is not a valid request (bad JSON,
unknown format or version, ill-typed fields, an architecture outside the space, weights that no longer match its
fingerprint) is published to the dead-letter queue with the reason and acked; the server logs it and goes on.
Weights are reloaded whenever a request carries another fingerprint; the data and model are rebuilt when the
evaluation settings change. Bad settings stop the server at start, before it takes a request: a missing data
folder, an unusable ``--device``, refused broker credentials, an unreachable broker. Ctrl-C stops it at once and
hands the request it holds back to the queue (a test server has no checkpoint: there is nothing to resume).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from anglenas.archs import check_arch
from anglenas.config import field
from anglenas.data import DataConfig
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.runtime import pick_device, use_threads
from anglenas.searchers.spos.evaluate import CandidateEvaluator, EvalSettings
from anglenas.searchers.spos.messages import MessageError, decode_request, encode, make_result, weights_fingerprint
from anglenas.searchers.spos.mq import (
    CONNECTION_ERRORS,
    REASON_HEADER,
    START_RETRY_SECONDS,
    BrokerConfig,
    Link,
    describe,
    error_line,
)


@dataclass
class ServerConfig(BrokerConfig, DataConfig):
    """A test server; the dataset folders must hold the data the search uses (its split travels in requests)."""

    device: str = field("auto", "cuda, cuda:N (pin a GPU), cpu or auto")
    threads: int = field(0, "CPU threads of evaluation (0: one per core this process may use); give each of "
                            "several servers on one machine its share", low=0)
    amp: bool | None = field(None, "bf16 autocast (default: on for CUDA)")
    max_requests: int = field(0, "exit after this many evaluations (0: serve until stopped)", low=0)
    weights_wait: float = field(30.0, "seconds to wait for a weights file to reach a request's fingerprint "
                                      "(slow shared filesystems) before refusing the request as stale", low=0)
    log_dir: str = field("", "also write the log here (default: stdout only)")
    demo: bool = field(False, "serve the demo search: embedded data on the CPU")


DEMO = dict(dataset="embedded", device="cpu", workers=0)


class TestServer:
    """Serves evaluation requests until stopped (or ``max_requests`` are done)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        check_data_source(cfg)
        self.threads = use_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.logger = RunLogger(cfg.log_dir or None, tensorboard=False)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.evaluator: CandidateEvaluator | None = None
        self.done, self.busy_seconds = 0, 0.0
        self.link: Link | None = None
        self.held: tuple[object, int] | None = None
        """(delivery, connection generation) of the request being handled, unacked until its result is out."""

    def log(self, message: str) -> None:
        self.logger.info(message)

    def serve(self) -> None:
        """Serve until stopped; Ctrl-C raises a ``KeyboardInterrupt`` whose message is the one line to print."""
        try:
            self._serve()
        except KeyboardInterrupt:
            raise KeyboardInterrupt(self._stop()) from None

    def _stop(self) -> str:
        """Hand the held request back to the queue and close the connection (the broker would requeue the request
        when the connection drops too); the line saying so."""
        held, link = self.held, self.link
        if link is not None:
            with contextlib.suppress(Exception):  # a connection interrupted mid-frame may refuse: closing requeues
                if held is not None and link.generation == held[1]:
                    link.channel.basic_nack(held[0].delivery_tag, requeue=True)
            with contextlib.suppress(Exception):
                link.close()
        served = f"{self.done} request{'s' if self.done != 1 else ''} served"
        back = "; the request it held went back to the queue" if held is not None else ""
        return f"test server {self.name} ({served}){back}"

    def _serve(self) -> None:
        self.link = Link(self.cfg, self.log, connect_for=START_RETRY_SECONDS)
        self.log(f"test server {self.name} on {self.device} ({self.threads} CPU thread(s)) serving queue "
                 f"{self.cfg.request_queue} of {describe(self.cfg)}")
        while True:
            try:
                generation = self.link.generation
                self.link.channel.basic_qos(prefetch_count=1)
                for method, _props, body in self.link.channel.consume(self.cfg.request_queue,
                                                                      inactivity_timeout=1.0):
                    if method is not None:
                        self.held = (method, generation)
                        self._handle(method, body, generation)
                    if self.cfg.max_requests and self.done >= self.cfg.max_requests:
                        self.log(f"served {self.done} requests; exiting")
                        self.link.close()
                        return
                    if self.link.generation != generation:  # reconnected while publishing: consume anew
                        break
            except CONNECTION_ERRORS as exc:
                self.log(f"lost {describe(self.cfg)} ({error_line(exc)}); reconnecting")
                self.link.reconnect()

    # -- one request --------------------------------------------------------------------------------------------
    def _ack(self, method, generation: int) -> None:
        if self.link.generation == generation:
            self.link.channel.basic_ack(method.delivery_tag)
        else:  # the broker dropped the old connection and will redeliver; the search drops the duplicate result
            self.log("the connection was renewed during this request: the broker redelivers it")
        self.held = None

    def _refuse(self, method, body: bytes, reason: str, generation: int) -> None:
        self.link.publish(self.cfg.dead_letter_queue, body, {REASON_HEADER: reason})
        self._ack(method, generation)
        self.log(f"refused a message to {self.cfg.dead_letter_queue}: {reason}")

    def _handle(self, method, body: bytes, generation: int) -> None:
        try:
            req = decode_request(body)
            settings = EvalSettings.from_dict(req["settings"])
            check_arch(req["arch"], settings.space)
        except (MessageError, UserError, ValueError) as exc:
            self._refuse(method, body, f"invalid request: {exc}", generation)
            return
        try:
            evaluator = self._evaluator(settings)
            found = self._load(evaluator, req["weights"], req["fingerprint"])
        except UserError:
            self.link.channel.basic_nack(method.delivery_tag, requeue=True)  # another server may have the files
            self.held = None
            raise
        if found != req["fingerprint"]:
            self._refuse(method, body, f"stale weights: the request is for {req['fingerprint']} but "
                                       f"{req['weights']} now holds {found}", generation)
            return
        arch_str = " ".join(map(str, req["arch"]))
        self.log(f"evaluating {arch_str} (request {req['id'][:8]}{', redelivered' if method.redelivered else ''})")
        t0 = time.perf_counter()
        future = _in_daemon_thread(evaluator, req["arch"])  # Ctrl-C need not wait for it
        while not future.done():  # keep heartbeats flowing during a long evaluation
            try:
                self.link.connection.sleep(0.05)
            except CONNECTION_ERRORS:
                future.result()  # finish; publishing below reconnects
        top1 = future.result()
        seconds = time.perf_counter() - t0
        self.link.publish(req["reply_to"], encode(make_result(req, top1, seconds, self.name, method.redelivered)))
        self._ack(method, generation)
        self.done += 1
        self.busy_seconds += seconds
        self.log(f"candidate {self.done} done: {arch_str} top1 {top1:.2f}% in {seconds:.2f}s "
                 f"({self.busy_seconds / self.done:.2f} s/candidate on average)")

    def _evaluator(self, settings: EvalSettings) -> CandidateEvaluator:
        if self.evaluator is None or self.evaluator.settings != settings:
            self.log(f"preparing data and model for {settings}")
            self.evaluator = CandidateEvaluator(settings, self.cfg, self.device, self.cfg.amp)
        return self.evaluator

    def _load(self, evaluator: CandidateEvaluator, weights: str, fingerprint: str) -> str:
        """Load the weights of ``fingerprint``; waits up to ``weights_wait`` s for the file to reach it."""
        deadline = time.monotonic() + self.cfg.weights_wait
        while True:
            if evaluator.fingerprint == fingerprint:
                return fingerprint
            if os.path.isfile(weights) and weights_fingerprint(weights) == fingerprint:
                self.log(f"loading weights {weights} ({fingerprint})")
                return evaluator.load(weights, fingerprint)
            if time.monotonic() > deadline:
                if not os.path.isfile(weights):
                    raise UserError(f"supernet weights {weights} do not exist here; test servers need the search's "
                                    f"--save folder at the same path (a shared filesystem)")
                return weights_fingerprint(weights)
            self.link.connection.sleep(1.0)


def _in_daemon_thread(fn, *args) -> concurrent.futures.Future:
    """``fn(*args)`` in a daemon thread (a thread pool's workers would hold the exit until they finish)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=run, name="evaluation", daemon=True).start()
    return future


DATA_PATHS = {"imagenet": "train_dir", "cifar10": "data_dir", "cifar100": "data_dir", "cifar10-jpg": "data_dir"}


def check_data_source(cfg: DataConfig) -> None:
    """Refuse a ``--dataset`` whose folder (or tarball) is not here, before the server takes a request."""
    name = DATA_PATHS.get(cfg.dataset)
    if name is None:
        return
    path = getattr(cfg, name)
    if not path:
        raise UserError(f"--dataset {cfg.dataset} needs --{name}: the same data as the search's, at a path of "
                        f"this host")
    if not Path(path).exists():
        raise UserError(f"--{name} {path} does not exist on this host; pass the folder of the search's data "
                        f"(--dataset {cfg.dataset})")
