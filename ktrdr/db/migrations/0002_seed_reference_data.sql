-- Reference data every instance needs: the operation types and the sample symbols.
INSERT INTO operation_types (name, worker_type, description) VALUES
    ('backtest', 'backtest', 'Moving-average crossover backtest over shared OHLCV data'),
    ('training', 'training', 'Least-squares model on lagged returns, written to shared models')
ON CONFLICT (name) DO NOTHING;

INSERT INTO symbols (symbol, asset_class, timeframes) VALUES
    ('AAPL', 'equity', ARRAY['1d']),
    ('MSFT', 'equity', ARRAY['1d']),
    ('EURUSD', 'fx', ARRAY['1d'])
ON CONFLICT (symbol) DO NOTHING;
