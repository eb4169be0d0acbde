-- OmniEdge control plane, initial schema (SQLite). Times are Unix milliseconds.
CREATE TABLE edge_users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    plan          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE edge_security_keys (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX edge_security_keys_user ON edge_security_keys(user_id);

CREATE TABLE edge_refresh_tokens (
    id         TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    key_id     TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX edge_refresh_tokens_family ON edge_refresh_tokens(family_id);
CREATE INDEX edge_refresh_tokens_key ON edge_refresh_tokens(key_id);

CREATE TABLE edge_devices (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    hardware_uuid TEXT NOT NULL,
    name          TEXT NOT NULL,
    platform      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    exit_consent  BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (user_id, hardware_uuid)
);

CREATE TABLE edge_user_servers (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    host       TEXT NOT NULL,
    country    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX edge_user_servers_user ON edge_user_servers(user_id);

CREATE TABLE edge_networks (
    id            TEXT PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES edge_users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    ip_range      TEXT NOT NULL UNIQUE,
    ipv6_range    TEXT NOT NULL UNIQUE,
    secret_sealed TEXT NOT NULL,
    server_id     TEXT REFERENCES edge_user_servers(id) ON DELETE SET NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX edge_networks_owner ON edge_networks(owner_id);

CREATE TABLE edge_memberships (
    network_id   TEXT NOT NULL REFERENCES edge_networks(id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL REFERENCES edge_devices(id) ON DELETE CASCADE,
    host         BIGINT NOT NULL,
    is_exit_node BOOLEAN NOT NULL DEFAULT FALSE,
    exit_node_id TEXT,
    joined_at    BIGINT NOT NULL,
    PRIMARY KEY (network_id, device_id),
    UNIQUE (network_id, host)
);
CREATE INDEX edge_memberships_device ON edge_memberships(device_id);

-- A counter bumped by every write that changes what a heartbeat answers, so
-- replicas can drop their caches.
CREATE TABLE edge_epoch (
    id    INTEGER PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO edge_epoch (id, value) VALUES (1, 1);
