-- Outbound proxies (route/proxies): the registry, where each is
-- assigned (global, a provider, a connection) and hourly health sums of
-- the upstream calls sent through each.
CREATE TABLE gateway_proxies (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    auth       TEXT NOT NULL DEFAULT '',
    notes      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE gateway_proxy_assignments (
    scope      TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    proxy_id   TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id)
);
CREATE INDEX gateway_proxy_assignments_proxy ON gateway_proxy_assignments (proxy_id);

CREATE TABLE gateway_proxy_health (
    proxy_id   TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    ok         BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (proxy_id, hour)
);
CREATE INDEX gateway_proxy_health_hour ON gateway_proxy_health (hour);
