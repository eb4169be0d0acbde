-- A device's tags ("tag:server,tag:robot": sorted, comma-separated, ''
-- for none), named by network access policies (docs/edge-policy.md).
ALTER TABLE edge_devices ADD COLUMN tags TEXT NOT NULL DEFAULT '';
