-- Core schema: reference tables, workers and operations.
CREATE TABLE operation_types (
    name        text PRIMARY KEY,
    worker_type text NOT NULL CHECK (worker_type IN ('backtest', 'training')),
    description text NOT NULL
);

CREATE TABLE symbols (
    symbol      text PRIMARY KEY,
    asset_class text NOT NULL,
    timeframes  text[] NOT NULL
);

CREATE TABLE workers (
    worker_id            text PRIMARY KEY,
    worker_type          text NOT NULL CHECK (worker_type IN ('backtest', 'training')),
    endpoint             text NOT NULL,
    status               text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'busy')),
    current_operation_id text,
    registered_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat       timestamptz,
    last_assigned_at     timestamptz
);

CREATE TABLE operations (
    operation_id   text PRIMARY KEY,
    operation_type text NOT NULL REFERENCES operation_types (name),
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    result         jsonb,
    error          text,
    worker_id      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);

CREATE INDEX operations_status_created ON operations (status, created_at);
