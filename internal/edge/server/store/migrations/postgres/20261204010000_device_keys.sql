-- Each device's WireGuard public key (base64, unique per user; NULL until
-- the device sends one), and a version of each network's secret, bumped
-- whenever the secret rotates (a member left or was removed).
ALTER TABLE edge_devices ADD COLUMN public_key TEXT;
CREATE UNIQUE INDEX edge_devices_user_key ON edge_devices(user_id, public_key);
ALTER TABLE edge_networks ADD COLUMN secret_version BIGINT NOT NULL DEFAULT 1;
