-- The usage breakdown (/api/usage/groups) and the request logs' model
-- filter at scale.
--
-- The hourly sums gain what the breakdown per provider, model and key
-- needs: rows for the empty provider and the empty key (refusals, calls
-- without a key), which no filter selects, and the dimension
-- 'client_model', the records summed by their model as the client named
-- it (val '' included), the breakdown's "model" (the 'model' dimension
-- counts a record under its target model and provider/target model too,
-- as the model filter does). Written by route/store with the others.
INSERT INTO route_usage_hourly (dim, val, hour, requests, errors, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, cost_usd, latency_ms)
SELECT dim, val, (at / 3600000) * 3600000, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens),
    SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost_usd), SUM(latency_ms)
FROM (
    SELECT 'provider' AS dim, '' AS val, u.* FROM route_usage u WHERE provider = ''
    UNION ALL SELECT 'key', '', u.* FROM route_usage u WHERE key_id = ''
    UNION ALL SELECT 'client_model', model, u.* FROM route_usage u
) s
GROUP BY dim, val, (at / 3600000) * 3600000;

-- Hourly sums per provider, model (as the client named it), target model
-- and key: the usage history, totals and breakdown filtered by one or
-- more of provider, model and key (a record's model filter matches its
-- model, target model or provider/target model, all three columns here,
-- so a row matches exactly when its records do). One row per hour and
-- combination that had a record, written by route/store in the same
-- transaction as the records it sums; latency_ms is the sum of the
-- latencies.
CREATE TABLE route_usage_hourly_detail (
    hour               BIGINT NOT NULL,
    key_id             TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    target_model       TEXT NOT NULL,
    requests           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, key_id, provider, model, target_model)
);
CREATE INDEX route_usage_hourly_detail_key ON route_usage_hourly_detail(key_id, hour);
CREATE INDEX route_usage_hourly_detail_provider ON route_usage_hourly_detail(provider, hour);
CREATE INDEX route_usage_hourly_detail_model ON route_usage_hourly_detail(model, hour);
CREATE INDEX route_usage_hourly_detail_target_model ON route_usage_hourly_detail(target_model, hour);
CREATE INDEX route_usage_hourly_detail_provider_target ON route_usage_hourly_detail((provider || '/' || target_model), hour);

INSERT INTO route_usage_hourly_detail (hour, key_id, provider, model, target_model, requests, errors, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms)
SELECT (at / 3600000) * 3600000, key_id, provider, model, target_model, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
    SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens),
    SUM(cost_usd), SUM(latency_ms)
FROM route_usage
GROUP BY (at / 3600000) * 3600000, key_id, provider, model, target_model;

-- A breakdown reads the hours of one dimension grouped by value, and a
-- history the hours of one value: both from this index alone, in its
-- order.
CREATE INDEX route_usage_hourly_sums ON route_usage_hourly(dim, val, hour, requests, errors, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms);

-- The request logs filtered by model, newest first: a record matches by
-- its model, its target model or provider/target model, so the page is
-- the union of three index walks in id order, each stopping after a page.
CREATE INDEX route_usage_model_id ON route_usage(model, id);
CREATE INDEX route_usage_target_model_id ON route_usage(target_model, id);
CREATE INDEX route_usage_provider_target_id ON route_usage((provider || '/' || target_model), id);
