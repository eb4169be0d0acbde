CREATE TABLE gateway_media_jobs (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    model          TEXT NOT NULL,
    provider       TEXT NOT NULL DEFAULT '',
    connection     TEXT NOT NULL DEFAULT '',
    upstream_model TEXT NOT NULL DEFAULT '',
    upstream_id    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL,
    progress       INTEGER NOT NULL DEFAULT 0,
    prompt         TEXT NOT NULL,
    seconds        INTEGER NOT NULL,
    size           TEXT NOT NULL DEFAULT '',
    error_code     TEXT NOT NULL DEFAULT '',
    error_message  TEXT NOT NULL DEFAULT '',
    content_url    TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    completed_at   BIGINT NOT NULL DEFAULT 0,
    expires_at     BIGINT NOT NULL,
    next_poll_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gateway_media_jobs_key ON gateway_media_jobs (key_id, status);
CREATE INDEX gateway_media_jobs_poll ON gateway_media_jobs (status, next_poll_at);
CREATE INDEX gateway_media_jobs_expiry ON gateway_media_jobs (expires_at);
