"""RabbitMQ transport (pika) between the search and its test servers.

Three durable queues on the default exchange: requests (search -> servers), results (servers -> search; each
request names its own in ``reply_to``), and a dead-letter queue that receives every message a server refuses,
with the reason in the ``x-anglenas-reason`` header. Messages are persistent and published with publisher
confirms, so a broker restart loses nothing; both sides reconnect with back-off. A server acks a request only
after its result is confirmed, so a server killed mid-evaluation leaves the request to be redelivered. Both sides
connect once at start (:func:`check_broker`), so wrong settings stop them before any work; every connection
message names the broker's host:port.
"""
from __future__ import annotations

import dataclasses
import os
import runpy
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pika
import pika.exceptions

from anglenas.config import check_ranges, field
from anglenas.errors import UserError
from anglenas.searchers.spos.evolution import Arch
from anglenas.searchers.spos.messages import MessageError, decode_result, encode, make_request

REASON_HEADER = "x-anglenas-reason"
CONNECTION_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                     pika.exceptions.StreamLostError, ConnectionError, OSError)


@dataclass
class BrokerConfig:
    """Broker settings; ``None`` means: the environment variable ``ANGLENAS_MQ_<NAME>``, else the default given to
    :meth:`resolved` (``searching/config.py``), else the built-in default (localhost, guest/guest)."""

    mq_host: str | None = field(None, "RabbitMQ host (env ANGLENAS_MQ_HOST)")
    mq_port: int | None = field(None, "RabbitMQ port (env ANGLENAS_MQ_PORT)", low=1, high=65535)
    mq_user: str | None = field(None, "RabbitMQ user (env ANGLENAS_MQ_USER)")
    mq_password: str | None = field(None, "RabbitMQ password (env ANGLENAS_MQ_PASSWORD)")
    mq_vhost: str | None = field(None, "RabbitMQ virtual host (env ANGLENAS_MQ_VHOST)")
    request_queue: str | None = field(None, "queue of evaluation requests (env ANGLENAS_MQ_REQUEST_QUEUE)")
    result_queue: str | None = field(None, "queue of results for this search (env ANGLENAS_MQ_RESULT_QUEUE)")
    dead_letter_queue: str | None = field(None, "queue of refused messages (env ANGLENAS_MQ_DEAD_LETTER_QUEUE)")


BUILTIN = dict(mq_host="localhost", mq_port=5672, mq_user="guest", mq_password="guest", mq_vhost="/",
               request_queue="anglenas_requests", result_queue="anglenas_results",
               dead_letter_queue="anglenas_dead_letters")


def resolve_broker(cfg: BrokerConfig, defaults: dict | None = None) -> BrokerConfig:
    """Fill every ``None`` field: flag > ``ANGLENAS_MQ_*`` environment variable > ``defaults`` > built-in."""
    out = {}
    for f in dataclasses.fields(BrokerConfig):
        value = getattr(cfg, f.name)
        if value is None:
            env = os.environ.get("ANGLENAS_MQ_" + f.name.removeprefix("mq_").upper())
            value = env if env is not None else (defaults or {}).get(f.name, BUILTIN[f.name])
        out[f.name] = _port(value) if f.name == "mq_port" else str(value)
    return check_ranges(BrokerConfig(**out))


def _port(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"the RabbitMQ port must be a number 1 to 65535, got {value!r} (from --mq_port, "
                        f"ANGLENAS_MQ_PORT or searching/config.py)") from None


def site_broker_settings(entry_point: str) -> dict:
    """The ``BROKER`` settings of the ``config.py`` next to an entry point (``searching/config.py``)."""
    path = Path(entry_point).resolve().with_name("config.py")
    try:
        settings = runpy.run_path(str(path))["BROKER"]
    except Exception as exc:  # a site's edit of the file can fail in any way
        raise UserError(f"{path} must define BROKER = dict(mq_host=..., ...): {error_line(exc)}") from None
    unknown = sorted(set(settings) - set(BUILTIN))
    if unknown:
        raise UserError(f"{path}: unknown BROKER key(s) {unknown}; known keys: {sorted(BUILTIN)}")
    return settings


def parse_with_broker(cls: type, defaults: dict, description: str, presets: dict, argv=None):
    """``parse_config(cls, argv, ...)`` with the broker fields resolved by :func:`resolve_broker` (entry points)."""
    from anglenas.config import parse_config

    cfg = parse_config(cls, argv, description=description, presets=presets)
    return dataclasses.replace(cfg, **dataclasses.asdict(resolve_broker(cfg, defaults)))


START_RETRY_SECONDS = 15.0  # an unreachable broker at start: give up after this long
RECONNECT_SECONDS = 600.0  # a broker lost mid-run: keep trying this long (a restart, a network hiccup)


def describe(cfg: BrokerConfig) -> str:
    """The broker as every connection message names it: host:port, vhost and user."""
    return f"RabbitMQ {cfg.mq_host}:{cfg.mq_port} (vhost {cfg.mq_vhost!r}, user {cfg.mq_user!r})"


def check_broker(cfg: BrokerConfig, log: Callable[[str], None], retry_for: float = START_RETRY_SECONDS) -> None:
    """Connect once and declare the queues, so that bad broker settings stop a run at its start: refused
    credentials or vhost at once, an unreachable broker after ``retry_for`` seconds (a :class:`UserError`)."""
    Link(cfg, log, connect_for=retry_for).close()
    log(f"{describe(cfg)} accepts this run's connection; queues {cfg.request_queue}, {cfg.result_queue}, "
        f"{cfg.dead_letter_queue}")


class Link:
    """One blocking connection + confirming channel with the three queues declared; ``reconnect`` on failure.

    The first connection gives up after ``connect_for`` seconds, a reconnection after ``retry_for``; refused
    credentials or vhost raise a :class:`UserError` at once."""

    def __init__(self, cfg: BrokerConfig, log: Callable[[str], None], retry_for: float = RECONNECT_SECONDS,
                 connect_for: float = RECONNECT_SECONDS) -> None:
        self.cfg, self.log, self.retry_for = cfg, log, retry_for
        self.connection: pika.BlockingConnection | None = None
        self.channel = None
        self.generation = 0  # bumped on every (re)connect: delivery tags of an older connection are void
        self.reconnect(connect_for)

    def reconnect(self, retry_for: float | None = None) -> None:
        """(Re)open the connection, retrying with back-off for ``retry_for`` (default ``self.retry_for``) s."""
        self.close()
        retry_for = self.retry_for if retry_for is None else retry_for
        cfg, deadline, delay = self.cfg, time.monotonic() + retry_for, 0.5
        params = pika.ConnectionParameters(cfg.mq_host, cfg.mq_port, cfg.mq_vhost,
                                           pika.PlainCredentials(cfg.mq_user, cfg.mq_password),
                                           heartbeat=60, blocked_connection_timeout=300, connection_attempts=1)
        while True:
            try:
                self.connection = pika.BlockingConnection(params)
                self.generation += 1
                self.channel = self.connection.channel()
                self.channel.confirm_delivery()
                for queue in (cfg.request_queue, cfg.result_queue, cfg.dead_letter_queue):
                    self.channel.queue_declare(queue, durable=True)
                return
            except pika.exceptions.ProbableAuthenticationError:
                raise UserError(f"{describe(cfg)} refused the login: check --mq_user/--mq_password "
                                f"(or ANGLENAS_MQ_USER/ANGLENAS_MQ_PASSWORD, searching/config.py)") from None
            except pika.exceptions.ProbableAccessDeniedError:
                raise UserError(f"{describe(cfg)} denied access to vhost {cfg.mq_vhost!r}: create it or grant the "
                                f"user permissions there (rabbitmqctl add_vhost / set_permissions), or fix "
                                f"--mq_vhost") from None
            except CONNECTION_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise UserError(f"cannot reach {describe(cfg)} ({error_line(exc)}); start the broker "
                                    f"(rabbitmq-server -detached) or fix --mq_host/--mq_port") from None
                self.log(f"{describe(cfg)} unreachable ({error_line(exc)}); retrying in {delay:.1f}s")
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def publish(self, queue: str, body: bytes, headers: dict | None = None) -> None:
        """Publish a persistent message and wait for the broker's confirm; reconnects and retries on failure."""
        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json",
                                     headers=headers)
        while True:
            try:
                self.channel.basic_publish("", queue, body, props, mandatory=True)
                return
            except pika.exceptions.UnroutableError:
                self.channel.queue_declare(queue, durable=True)
            except CONNECTION_ERRORS as exc:
                self.log(f"publish to {describe(self.cfg)} failed ({error_line(exc)}); reconnecting")
                self.reconnect()

    def close(self) -> None:
        if self.connection is not None and self.connection.is_open:
            try:
                self.connection.close()
            except CONNECTION_ERRORS:
                pass
        self.connection = self.channel = None


def error_line(exc: BaseException) -> str:
    """One line about a connection error (pika nests the socket error in its arguments)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


class RabbitEvaluator:
    """The search's ``Evaluator`` over RabbitMQ: publish one request per candidate, collect results.

    A result counts only if it answers an outstanding request of this search for the current weights
    (fingerprint); duplicates and stale results are acked and dropped. ``on_sent(arch, id)`` lets the caller
    persist request ids so a resumed search waits for requests still in the queue instead of re-sending them
    (``pending`` gives them back). With ``resend_after`` > 0 a request unanswered that long is published again.
    """

    def __init__(self, broker: BrokerConfig, weights: str, fingerprint: str, settings: dict, logger,
                 on_sent: Callable[[Arch, str], None] | None = None, pending: dict[Arch, str] | None = None,
                 resend_after: float = 0.0, progress: Callable[[], None] | None = None,
                 wait_log_every: float = 60.0) -> None:
        self.broker, self.weights, self.fingerprint, self.settings = broker, weights, fingerprint, settings
        self.logger, self.on_sent, self.progress = logger, on_sent, progress
        self.pending: dict[Arch, str] = dict(pending or {})
        self.resend_after, self.wait_log_every = resend_after, wait_log_every
        self.link = Link(broker, logger.info)
        self.dropped = {"duplicate": 0, "stale": 0, "malformed": 0, "unknown": 0}

    def _send(self, arch: Arch) -> str:
        request_id = uuid.uuid4().hex
        body = encode(make_request(request_id, list(arch), self.weights, self.fingerprint, self.settings,
                                   self.broker.result_queue))
        self.link.publish(self.broker.request_queue, body)  # returns once the broker confirmed it
        if self.on_sent is not None:
            self.on_sent(arch, request_id)
        self.pending[arch] = request_id
        return request_id

    def evaluate(self, archs: Sequence[Arch], on_result: Callable[[Arch, float], None]) -> None:
        wanted = {tuple(a) for a in archs}
        for arch in sorted(wanted):
            if arch not in self.pending:
                self._send(arch)
        sent_at = {a: time.monotonic() for a in wanted}
        by_id = {self.pending[a]: a for a in wanted}
        last_news = time.monotonic()
        while wanted:
            got = self._next_result()
            now = time.monotonic()
            if got is None:
                if now - last_news > self.wait_log_every:
                    self.logger.info(f"waiting for {len(wanted)} results from queue {self.broker.request_queue} "
                                     f"on {describe(self.broker)}; is a test server running? "
                                     f"(python searching/test_server.py)")
                    last_news = now
                if self.resend_after > 0:
                    for arch in [a for a in wanted if now - sent_at[a] > self.resend_after]:
                        self.logger.info(f"no result for {' '.join(map(str, arch))} after {self.resend_after:.0f}s;"
                                         f" re-sending it")
                        by_id[self._send(arch)] = arch
                        sent_at[arch] = now
                continue
            msg, ack = got
            arch = by_id.get(msg["id"])
            if msg["fingerprint"] != self.fingerprint:
                self.dropped["stale"] += 1
                self.logger.info(f"dropped a result computed with other weights ({msg['fingerprint']})")
            elif arch is None or arch not in wanted or tuple(msg["arch"]) != arch:
                self.dropped["duplicate" if arch is not None else "unknown"] += 1
            else:
                on_result(arch, msg["top1"])
                wanted.discard(arch)
                self.pending.pop(arch, None)
                last_news = now
                if self.progress is not None:
                    self.progress()
            ack()

    def _next_result(self, timeout: float = 1.0):
        """(result, ack) of the next valid result message, or None after ``timeout`` seconds."""
        while True:
            try:
                method, _props, body = self.link.channel.basic_get(self.broker.result_queue, auto_ack=False)
                if method is None:
                    self.link.connection.sleep(min(timeout, 0.05))
                    timeout -= 0.05
                    if timeout <= 0:
                        return None
                    continue
                channel, tag = self.link.channel, method.delivery_tag
                try:
                    msg = decode_result(body)
                except MessageError as exc:
                    self.dropped["malformed"] += 1
                    self.logger.info(f"malformed result sent to {self.broker.dead_letter_queue}: {exc}")
                    self.link.publish(self.broker.dead_letter_queue, body, {REASON_HEADER: str(exc)})
                    channel.basic_ack(tag)
                    continue
                return msg, lambda: self._ack(channel, tag)
            except CONNECTION_ERRORS as exc:
                self.logger.info(f"lost {describe(self.broker)} ({error_line(exc)}); reconnecting")
                self.link.reconnect()

    def _ack(self, channel, tag: int) -> None:
        try:
            channel.basic_ack(tag)
        except CONNECTION_ERRORS:  # the message comes back after a reconnect and is then dropped as a duplicate
            pass

    def close(self) -> None:
        self.link.close()
