-- The compliance audit log (route/admin/audit): one row per successful
-- management change, appended by the management guard; never updated,
-- and deleted only by the retention sweep (age and row caps).
CREATE TABLE gateway_audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    addr         TEXT NOT NULL,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    path         TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    request_doc  TEXT,
    before_doc   TEXT,
    after_doc    TEXT
);
CREATE INDEX gateway_audit_log_at ON gateway_audit_log (at);
