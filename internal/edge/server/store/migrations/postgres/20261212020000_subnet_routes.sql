-- Subnet routes: the prefixes a device offers to route to (set by the
-- device, `omni edge up --advertise-routes`) and, per membership, those the
-- network's owner approved. Comma-separated canonical prefixes; '' none.
ALTER TABLE edge_devices ADD COLUMN advertised_routes TEXT NOT NULL DEFAULT '';
ALTER TABLE edge_memberships ADD COLUMN approved_routes TEXT NOT NULL DEFAULT '';
