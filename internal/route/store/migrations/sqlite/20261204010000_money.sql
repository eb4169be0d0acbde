-- Output limits of priced models (the most tokens a model writes in one
-- answer, reserved against budgets when a request sets no max_tokens; 0:
-- the built-in or default limit), and issuers of registered keys: the
-- scopes a key holds (a JSON list, e.g. ["issue"]) and the key that issued
-- a registered key ('' for the management login).
ALTER TABLE route_pricing ADD COLUMN max_output BIGINT NOT NULL DEFAULT 0;
ALTER TABLE route_api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE route_api_keys ADD COLUMN issuer_id TEXT NOT NULL DEFAULT '';
CREATE INDEX route_api_keys_issuer ON route_api_keys(issuer_id);
