-- Response cache, second tier (shared by replicas, kept across restarts).
-- value is the JSON of an llm.Response; times are Unix milliseconds.
CREATE TABLE route_cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX route_cache_created ON route_cache(created_at);
CREATE INDEX route_cache_expires ON route_cache(expires_at);
