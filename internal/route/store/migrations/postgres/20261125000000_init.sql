-- OmniRoute gateway management, initial schema (PostgreSQL). Times are Unix
-- milliseconds; JSON columns hold text.
CREATE TABLE route_providers (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    base_url   TEXT NOT NULL DEFAULT '',
    headers    TEXT NOT NULL DEFAULT '{}',
    models     TEXT NOT NULL DEFAULT '[]',
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One connection per credential. api_key is sealed (AES-256-GCM, key
-- derived from the master key, AAD = provider id).
CREATE TABLE route_credentials (
    id          TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES route_providers(id) ON DELETE CASCADE,
    label       TEXT NOT NULL DEFAULT '',
    api_key     TEXT NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX route_credentials_provider ON route_credentials(provider_id);

-- Gateway API keys: only the SHA-256 of the key is kept.
CREATE TABLE route_api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    allowed_models TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);

CREATE TABLE route_aliases (
    name       TEXT PRIMARY KEY,
    target     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE route_combos (
    name       TEXT PRIMARY KEY,
    strategy   TEXT NOT NULL,
    targets    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE route_combo_mappings (
    id          TEXT PRIMARY KEY,
    pattern     TEXT NOT NULL,
    combo       TEXT NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

-- Models added to (or hidden from) a provider's list; provider may be
-- declared in the configuration file, so there is no foreign key.
CREATE TABLE route_provider_models (
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    hidden     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, model)
);

-- Price overrides in USD per million tokens, by model glob pattern.
CREATE TABLE route_pricing (
    pattern     TEXT PRIMARY KEY,
    input       DOUBLE PRECISION NOT NULL,
    output      DOUBLE PRECISION NOT NULL,
    cache_read  DOUBLE PRECISION NOT NULL DEFAULT 0,
    cache_write DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE route_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Dashboard login sessions; logging out deletes the row.
CREATE TABLE route_sessions (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Bumped by every change that alters routing, so replicas reload.
CREATE TABLE route_epoch (
    id    INTEGER PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO route_epoch (id, value) VALUES (1, 0);
