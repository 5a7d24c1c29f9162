"""SPOS / FairNAS search in the shrunk space.

    torchrun --nproc_per_node=8 searching/main.py --operations_path FILE --train_dir DIR [--method fairnas]
    python searching/main.py --demo --operations_path FILE        # CPU demo on the embedded data

Trains the supernet restricted to the operations file, then runs the evolutionary search with the in-process
evaluator (--backend local) or RabbitMQ test servers (--backend rabbitmq; start searching/test_server.py).
Writes SAVE/search_result.json; run again with the same arguments to resume.
"""
from anglenas.errors import cli
from anglenas.searchers.registry import get_searcher
from anglenas.searchers.spos.mq import parse_with_broker, site_broker_settings
from anglenas.searchers.spos.search import DEMO, SearchConfig


@cli
def main() -> None:
    cfg = parse_with_broker(SearchConfig, site_broker_settings(__file__), __doc__, {"demo": DEMO})
    get_searcher(cfg.method).run(cfg)


if __name__ == "__main__":
    main()
