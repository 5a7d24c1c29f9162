"""A test server of the search: ``python test_server.py [--device cuda:1] [--train_dir ...]``; ``--demo`` serves
the demo search (embedded data, CPU). Start as many as you like (tmux windows, hosts, GPUs), before or during the
search; stop with Ctrl-C (the request in progress goes back to the queue).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from config import BROKER  # noqa: E402

from anglenas.errors import cli  # noqa: E402
from anglenas.search.mq import parse_with_broker  # noqa: E402
from anglenas.search.server import DEMO, ServerConfig, TestServer  # noqa: E402


@cli
def main() -> None:
    TestServer(parse_with_broker(ServerConfig, BROKER, __doc__, {"demo": DEMO})).serve()


if __name__ == "__main__":
    main()
