"""A test server of the search: ``python searching/test_server.py [--device cuda:1] [--train_dir ...]``; ``--demo``
serves the demo search (embedded data, CPU). Start as many as you like (tmux windows, hosts, GPUs), before or during
the search; stop with Ctrl-C (the request in progress goes back to the queue). The broker settings come from
searching/config.py, ANGLENAS_MQ_* variables or flags; wrong ones, like a missing data folder, stop it at start.
"""
from anglenas.errors import cli
from anglenas.searchers.spos.mq import parse_with_broker, site_broker_settings
from anglenas.searchers.spos.server import DEMO, ServerConfig, TestServer


@cli
def main(argv=None) -> None:
    TestServer(parse_with_broker(ServerConfig, site_broker_settings(__file__), __doc__, {"demo": DEMO}, argv)).serve()


if __name__ == "__main__":
    main()
