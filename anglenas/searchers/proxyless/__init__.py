"""ProxylessNAS (mit-han-lab/ProxylessNAS; the original's ``ProxylessNAS/searching``) on any space with a relaxed
supernet: binary gates, the hardware term and the searcher."""
from anglenas.searchers.proxyless.config import DEMO, ProxylessConfig
from anglenas.searchers.proxyless.search import ProxylessSearch, run_proxyless

__all__ = ["DEMO", "ProxylessConfig", "ProxylessSearch", "run_proxyless"]
