-- Webhooks (route/webhooks): the subscriptions, and one row per event
-- to deliver to one of them, kept until delivered or given up, then for
-- the retention period.
CREATE TABLE gateway_webhooks (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    secret_prefix TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE gateway_webhook_deliveries (
    id          TEXT PRIMARY KEY,
    webhook_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT NOT NULL DEFAULT '',
    last_status INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX gateway_webhook_deliveries_due ON gateway_webhook_deliveries (status, next_at);
CREATE INDEX gateway_webhook_deliveries_hook ON gateway_webhook_deliveries (webhook_id, created_at, id);
CREATE INDEX gateway_webhook_deliveries_done ON gateway_webhook_deliveries (status, updated_at);
