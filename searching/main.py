"""SPOS / FairNAS search in the shrunk space (``torchrun --nproc_per_node=8 main.py --operations_path FILE
--train_dir ...``; ``--demo`` for a CPU demo on the embedded data).

Trains the supernet restricted to the operations file, then runs the evolutionary search with the in-process
evaluator (``--backend local``) or RabbitMQ test servers (``--backend rabbitmq``, start ``test_server.py``).
Writes SAVE/search_result.json; run again with the same arguments to resume.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from config import BROKER  # noqa: E402

from anglenas.errors import cli  # noqa: E402
from anglenas.search.mq import parse_with_broker  # noqa: E402
from anglenas.search.run import DEMO, Search, SearchConfig  # noqa: E402


@cli
def main() -> None:
    Search(parse_with_broker(SearchConfig, BROKER, __doc__, {"demo": DEMO})).run()


if __name__ == "__main__":
    main()
