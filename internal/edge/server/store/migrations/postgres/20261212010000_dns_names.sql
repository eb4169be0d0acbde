-- The DNS label a user chose for a device or a network ('' : derived from
-- its name). Names are <device>.<network>.<suffix>; see docs/edge-names.md.
ALTER TABLE edge_devices ADD COLUMN dns_name TEXT NOT NULL DEFAULT '';
ALTER TABLE edge_networks ADD COLUMN dns_name TEXT NOT NULL DEFAULT '';
