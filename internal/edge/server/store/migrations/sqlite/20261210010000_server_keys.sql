-- The static X25519 public key a user-hosted nucleus publishes with its
-- entry (base64; '' until it published one). Join answers hand it to the
-- devices, which key their signaling with it.
ALTER TABLE edge_user_servers ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
