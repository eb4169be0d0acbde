-- Provider header values that are credentials (Authorization, *key*,
-- *token*, *secret*, cookies …) are kept here, sealed like provider keys
-- (AES-256-GCM, key derived from the master key, AAD = "headers:" and the
-- provider id), as one JSON object; the other headers stay in headers.
ALTER TABLE route_providers ADD COLUMN secret_headers TEXT NOT NULL DEFAULT '';
