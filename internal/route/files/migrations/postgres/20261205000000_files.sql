-- Files uploaded through /v1/files (route/files): their metadata; the
-- content is in the module's storage under the id. Not a route_* table:
-- backups copy the route product's tables, and the content is in none, so
-- neither is the metadata (a restore revives no file whose content is gone).
CREATE TABLE gateway_files (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX gateway_files_owner ON gateway_files (owner, created_at, id);
CREATE INDEX gateway_files_expires ON gateway_files (expires_at);
