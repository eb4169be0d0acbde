-- Per-key policy (allowed providers, request and token limits), registered
-- keys (issued through /api/v1/registered-keys), USD budgets and the spend
-- persisted per budget window.
ALTER TABLE route_api_keys ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE route_api_keys ADD COLUMN rpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE route_api_keys ADD COLUMN rpd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE route_api_keys ADD COLUMN tpm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE route_api_keys ADD COLUMN tpd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE route_api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'managed';
ALTER TABLE route_api_keys ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE route_api_keys ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
ALTER TABLE route_api_keys ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE route_api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE route_api_keys ADD COLUMN revoked_at BIGINT;

CREATE TABLE route_key_budgets (
    key_id            TEXT PRIMARY KEY,
    hourly_usd        DOUBLE PRECISION NOT NULL DEFAULT 0,
    daily_usd         DOUBLE PRECISION NOT NULL DEFAULT 0,
    weekly_usd        DOUBLE PRECISION NOT NULL DEFAULT 0,
    monthly_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    warning_threshold DOUBLE PRECISION NOT NULL DEFAULT 0.8,
    reset_interval    TEXT NOT NULL DEFAULT '',
    reset_time        TEXT NOT NULL DEFAULT '00:00',
    updated_at        BIGINT NOT NULL
);

CREATE TABLE route_key_spend (
    key_id       TEXT NOT NULL,
    period       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    spent_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period, window_start)
);
