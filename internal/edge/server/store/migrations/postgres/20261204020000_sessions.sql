-- Address ranges are unique per owner, not globally: the old unique
-- ip_range column becomes owner_range ("OWNER_ID RANGE", still unique) and a
-- plain ip_range column takes the range. Renaming keeps the constraint
-- without rebuilding the table (which SQLite could not do inside the
-- migration's transaction without cascading into memberships).
ALTER TABLE edge_networks RENAME COLUMN ip_range TO owner_range;
ALTER TABLE edge_networks ADD COLUMN ip_range TEXT NOT NULL DEFAULT '';
UPDATE edge_networks SET ip_range = owner_range, owner_range = owner_id || ' ' || owner_range;

-- Login sessions: one row per refresh-token family, with how and from
-- where it was created, so users can list and revoke them.
CREATE TABLE edge_login_sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    key_id       TEXT,
    method       TEXT NOT NULL,
    client_ip    TEXT NOT NULL DEFAULT '',
    user_agent   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX edge_login_sessions_user ON edge_login_sessions(user_id);
CREATE INDEX edge_login_sessions_key ON edge_login_sessions(key_id);

INSERT INTO edge_login_sessions (id, user_id, key_id, method, created_at, last_used_at, expires_at, revoked_at)
SELECT family_id, MIN(user_id), MAX(key_id),
       CASE WHEN MAX(key_id) IS NULL OR MAX(key_id) = '' THEN 'browser' ELSE 'security_key' END,
       MIN(created_at), MAX(created_at), MAX(expires_at), MAX(revoked_at)
FROM edge_refresh_tokens GROUP BY family_id;

-- The login sessions a device's requests came with (register, heartbeat),
-- revoked when the device is deleted.
CREATE TABLE edge_device_sessions (
    device_id  TEXT NOT NULL REFERENCES edge_devices(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    PRIMARY KEY (device_id, session_id)
);
