-- Routing policies (route/policies): which targets requests may be
-- routed to. keys, providers and models are JSON arrays of strings.
CREATE TABLE gateway_policies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    kind        TEXT NOT NULL,
    keys        TEXT NOT NULL DEFAULT '[]',
    providers   TEXT NOT NULL DEFAULT '[]',
    models      TEXT NOT NULL DEFAULT '[]',
    priority    INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
