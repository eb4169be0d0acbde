-- A network's access policy (internal/edge/proto/policy): the document as
-- the owner wrote it and its version, bumped by every change. No row: no
-- policy (every member may reach every member).
CREATE TABLE edge_policies (
    network_id TEXT PRIMARY KEY REFERENCES edge_networks(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    document   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
