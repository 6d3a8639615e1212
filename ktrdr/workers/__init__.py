"""KTRDR workers: HTTP job runners for backtests and model training."""

WORKER_TYPES = ("backtest", "training")
