-- Files uploaded through /v1/files (route/files): their metadata; the
-- content is in the module's storage under the id.
CREATE TABLE route_files (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX route_files_owner ON route_files (owner, created_at, id);
CREATE INDEX route_files_expires ON route_files (expires_at);
