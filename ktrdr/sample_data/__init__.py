"""Packaged sample data: deterministic daily OHLCV for AAPL, MSFT, EURUSD and strategy configs."""
