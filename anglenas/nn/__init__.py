"""Helpers for any network: weight initialisation, and loading weights (ours or an original's) into a network."""
