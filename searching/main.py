"""Search a (shrunk) space with any registered searcher.

    torchrun --nproc_per_node=8 searching/main.py --operations_path FILE --train_dir DIR [--method fairnas]
    python searching/main.py --demo --operations_path FILE        # SPOS, CPU demo on the embedded data
    python searching/main.py --searcher darts --space nb201 --demo
    python searching/main.py --searcher proxylessnas --operations_path FILE --demo

--searcher (default spos; --method spos|fairnas|rsps as the original) picks the searcher, --space the space (default:
the operations file's). SPOS / FairNAS / RSPS train the supernet, then score candidates in this process (--backend
local) or on RabbitMQ test servers (--backend rabbitmq; start searching/test_server.py). Writes SAVE/search_result.json;
run again with the same arguments to resume.
"""
from anglenas.errors import cli
from anglenas.searchers.spos.mq import site_broker_settings
from anglenas.stages.search import parse_search, run_search


@cli
def main(argv=None) -> None:
    searcher, cfg = parse_search(argv, "spos", __doc__, prog="main.py", broker_defaults=site_broker_settings(__file__))
    run_search(searcher, cfg)


if __name__ == "__main__":
    main()
