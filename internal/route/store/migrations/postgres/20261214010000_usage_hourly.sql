-- Hourly sums of the usage records, so the usage history and totals of a
-- long period read a few hundred rows instead of every record. One row
-- per hour (Unix milliseconds of its start) and dimension: dim '' sums
-- every record of the hour; 'provider', 'key' and 'connection' the
-- records with that value; 'model' the records whose model, target model
-- or provider/target model is val (each record counted once per distinct
-- value). Empty values are not summed (no filter selects them). Written
-- by route/store in the same transaction as the records it sums;
-- latency_ms is the sum of the latencies.
CREATE TABLE route_usage_hourly (
    dim                TEXT NOT NULL,
    val                TEXT NOT NULL,
    hour               BIGINT NOT NULL,
    requests           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dim, val, hour)
);

-- The request logs filtered by key, provider or connection, newest first:
-- these walk only the matching records in id order, however rare they are.
CREATE INDEX route_usage_key_id ON route_usage(key_id, id);
CREATE INDEX route_usage_provider_id ON route_usage(provider, id);
CREATE INDEX route_usage_connection_id ON route_usage(connection, id);

INSERT INTO route_usage_hourly (dim, val, hour, requests, errors, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, cost_usd, latency_ms)
SELECT dim, val, (at / 3600000) * 3600000, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens),
    SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost_usd), SUM(latency_ms)
FROM (
    SELECT '' AS dim, '' AS val, u.* FROM route_usage u
    UNION ALL SELECT 'provider', provider, u.* FROM route_usage u WHERE provider <> ''
    UNION ALL SELECT 'key', key_id, u.* FROM route_usage u WHERE key_id <> ''
    UNION ALL SELECT 'connection', connection, u.* FROM route_usage u WHERE connection <> ''
    UNION ALL SELECT 'model', model, u.* FROM route_usage u WHERE model <> ''
    UNION ALL SELECT 'model', target_model, u.* FROM route_usage u WHERE target_model <> '' AND target_model <> model
    UNION ALL SELECT 'model', provider || '/' || target_model, u.* FROM route_usage u
        WHERE provider || '/' || target_model <> model AND provider || '/' || target_model <> target_model
) s
GROUP BY dim, val, (at / 3600000) * 3600000;

