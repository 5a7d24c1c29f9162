"""Searchers: one sub-package per family, each searcher a registered plug-in (:mod:`anglenas.searchers.registry`)."""
