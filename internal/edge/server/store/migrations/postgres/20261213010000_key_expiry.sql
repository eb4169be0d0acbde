-- Device key lifetimes (docs/edge-key-expiry.md). key_set_at is when the
-- control plane recorded the device's current public key (Unix ms; NULL
-- without a key); key_expired_at is when the owner expired that key (NULL:
-- not expired by hand; cleared when the device registers a new key).
-- key_expiry_ms is a network's key lifetime (0: keys never expire there).
-- Keys registered before this migration count from the migration.
ALTER TABLE edge_devices ADD COLUMN key_set_at BIGINT;
ALTER TABLE edge_devices ADD COLUMN key_expired_at BIGINT;
ALTER TABLE edge_networks ADD COLUMN key_expiry_ms BIGINT NOT NULL DEFAULT 0;
UPDATE edge_devices SET key_set_at = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT WHERE public_key IS NOT NULL;
