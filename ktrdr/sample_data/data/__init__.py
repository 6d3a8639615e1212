"""Sample OHLCV CSV files ({SYMBOL}_{TIMEFRAME}.csv)."""
