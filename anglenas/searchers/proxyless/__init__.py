"""ProxylessNAS (spec §8) in the shrunk GPU space: binary-gate supernet, hardware term and the searcher."""
from anglenas.searchers.proxyless.search import DEMO, ProxylessConfig, ProxylessSearch, run_proxyless

__all__ = ["DEMO", "ProxylessConfig", "ProxylessSearch", "run_proxyless"]
