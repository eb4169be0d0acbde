-- Batches (route/batches): one row per batch, one per input line until
-- the batch is finalized into its output and error files.
CREATE TABLE gateway_batches (
    id                TEXT PRIMARY KEY,
    key_id            TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    input_file_id     TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status            TEXT NOT NULL,
    metadata          TEXT NOT NULL DEFAULT '',
    errors            TEXT NOT NULL DEFAULT '',
    output_file_id    TEXT NOT NULL DEFAULT '',
    error_file_id     TEXT NOT NULL DEFAULT '',
    total             INTEGER NOT NULL DEFAULT 0,
    completed         INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    in_progress_at    BIGINT,
    finalizing_at     BIGINT,
    completed_at      BIGINT,
    failed_at         BIGINT,
    expired_at        BIGINT,
    cancelling_at     BIGINT,
    cancelled_at      BIGINT,
    lease_owner       TEXT NOT NULL DEFAULT '',
    lease_until       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gateway_batches_key ON gateway_batches (key_id, created_at, id);
CREATE INDEX gateway_batches_status ON gateway_batches (status);

CREATE TABLE gateway_batch_lines (
    batch_id    TEXT NOT NULL,
    line        INTEGER NOT NULL,
    custom_id   TEXT NOT NULL,
    request     TEXT NOT NULL,
    state       TEXT NOT NULL,
    ok          INTEGER NOT NULL DEFAULT 0,
    result      TEXT NOT NULL DEFAULT '',
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line)
);
CREATE INDEX gateway_batch_lines_state ON gateway_batch_lines (batch_id, state, line);
CREATE INDEX gateway_batch_lines_lease ON gateway_batch_lines (state, lease_until);
