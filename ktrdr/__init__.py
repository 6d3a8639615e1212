"""KTRDR: trading research backend, workers and the `ktrdr` developer CLI."""

__version__ = "0.1.0"
