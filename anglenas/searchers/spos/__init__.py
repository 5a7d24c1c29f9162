"""SPOS and FairNAS (the original's ``SPOS/searching`` and ``FairNAS/searching``): a single-path supernet in the shrunk
space, then an evolutionary search whose candidates are scored in this process, by local workers or by RabbitMQ test
servers."""
from anglenas.searchers.spos import search  # noqa: F401  (registers spos, fairnas)
