"""ProxylessNAS in the shrunk GPU space (spec §8): ``python imagenet_arch_search.py --path DIR --target_hardware
flops --operations_path FILE --train_dir DIR --test_dir DIR`` (``--demo`` for a CPU demo on the embedded data).

Warm-up on random paths, then binary-gate architecture search with the expected-FLOPs (or a user latency table)
term. Writes DIR/search_result.json, which ``training/train_from_scratch.py --arch DIR/search_result.json``
trains, and DIR/arch_probabilities.png; run the same command again to resume after a stop.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.searchers.proxyless import DEMO, ProxylessConfig, run_proxyless


@cli
def main() -> None:
    run_proxyless(parse_config(ProxylessConfig, description=__doc__, presets={"demo": DEMO}))


if __name__ == "__main__":
    main()
