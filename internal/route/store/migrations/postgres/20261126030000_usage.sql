-- Usage records: one row per routed chat request (success, failure or
-- refusal), written in batches by route/usage and deleted after the
-- retention age. Times are Unix milliseconds.
CREATE TABLE route_usage (
    id                 BIGSERIAL PRIMARY KEY,
    at                 BIGINT NOT NULL,
    key_id             TEXT NOT NULL DEFAULT '',
    endpoint           TEXT NOT NULL DEFAULT '',
    model              TEXT NOT NULL DEFAULT '',
    provider           TEXT NOT NULL DEFAULT '',
    connection         TEXT NOT NULL DEFAULT '',
    target_model       TEXT NOT NULL DEFAULT '',
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    estimated          BOOLEAN NOT NULL DEFAULT FALSE,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL DEFAULT 0,
    ttft_ms            BIGINT NOT NULL DEFAULT 0,
    status             INTEGER NOT NULL DEFAULT 0,
    error_type         TEXT NOT NULL DEFAULT '',
    error_message      TEXT NOT NULL DEFAULT '',
    attempts           INTEGER NOT NULL DEFAULT 0,
    attempts_json      TEXT NOT NULL DEFAULT '[]',
    cache              TEXT NOT NULL DEFAULT '',
    idempotent         BOOLEAN NOT NULL DEFAULT FALSE,
    stream             BOOLEAN NOT NULL DEFAULT FALSE,
    session            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX route_usage_at ON route_usage(at);
CREATE INDEX route_usage_connection ON route_usage(connection, at);
CREATE INDEX route_usage_session ON route_usage(session, at);
