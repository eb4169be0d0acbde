-- The usage of the modalities beyond chat in the hourly sums: the
-- dimensions 'modality' (every record; '' is chat, embeddings and token
-- counts) and 'unit' (the records that used a unit: documents, images,
-- seconds …), a quantity column summing the records' quantities in
-- their own units (meaningful per unit), and the modality and unit of
-- the sums per hour, key, provider and model, so that the breakdown per
-- modality or unit and the modality filter read sums. Both tables are
-- rebuilt from the records, which they always sum exactly.
-- The request logs filtered by modality, newest first.
CREATE INDEX route_usage_modality_id ON route_usage(modality, id);

ALTER TABLE route_usage_hourly ADD COLUMN quantity BIGINT NOT NULL DEFAULT 0;
DELETE FROM route_usage_hourly;
INSERT INTO route_usage_hourly (dim, val, hour, requests, errors, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, quantity)
SELECT dim, val, (at / 3600000) * 3600000, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens),
    SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost_usd), SUM(latency_ms),
    SUM(quantity)
FROM (
    SELECT '' AS dim, '' AS val, u.* FROM route_usage u
    UNION ALL SELECT 'provider', provider, u.* FROM route_usage u
    UNION ALL SELECT 'key', key_id, u.* FROM route_usage u
    UNION ALL SELECT 'connection', connection, u.* FROM route_usage u WHERE connection <> ''
    UNION ALL SELECT 'model', model, u.* FROM route_usage u WHERE model <> ''
    UNION ALL SELECT 'model', target_model, u.* FROM route_usage u WHERE target_model <> '' AND target_model <> model
    UNION ALL SELECT 'model', provider || '/' || target_model, u.* FROM route_usage u
        WHERE provider || '/' || target_model <> model AND provider || '/' || target_model <> target_model
    UNION ALL SELECT 'client_model', model, u.* FROM route_usage u
    UNION ALL SELECT 'modality', modality, u.* FROM route_usage u
    UNION ALL SELECT 'unit', unit, u.* FROM route_usage u WHERE unit <> ''
) s
GROUP BY dim, val, (at / 3600000) * 3600000;

DROP TABLE route_usage_hourly_detail;
CREATE TABLE route_usage_hourly_detail (
    hour               BIGINT NOT NULL,
    key_id             TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    target_model       TEXT NOT NULL,
    modality           TEXT NOT NULL,
    unit               TEXT NOT NULL,
    requests           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL DEFAULT 0,
    quantity           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, key_id, provider, model, target_model, modality, unit)
);
CREATE INDEX route_usage_hourly_detail_key ON route_usage_hourly_detail(key_id, hour);
CREATE INDEX route_usage_hourly_detail_provider ON route_usage_hourly_detail(provider, hour);
CREATE INDEX route_usage_hourly_detail_model ON route_usage_hourly_detail(model, hour);
CREATE INDEX route_usage_hourly_detail_target_model ON route_usage_hourly_detail(target_model, hour);
CREATE INDEX route_usage_hourly_detail_provider_target ON route_usage_hourly_detail((provider || '/' || target_model), hour);
CREATE INDEX route_usage_hourly_detail_modality ON route_usage_hourly_detail(modality, hour);

INSERT INTO route_usage_hourly_detail (hour, key_id, provider, model, target_model, modality, unit, requests, errors,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, quantity)
SELECT (at / 3600000) * 3600000, key_id, provider, model, target_model, modality, unit, COUNT(*),
    SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
    SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost_usd), SUM(latency_ms), SUM(quantity)
FROM route_usage
GROUP BY (at / 3600000) * 3600000, key_id, provider, model, target_model, modality, unit;
