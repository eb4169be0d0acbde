-- Stored Responses conversations (previous_response_id, GET/DELETE
-- /v1/responses/{id}) shared by replicas without Redis. owner is the
-- gateway key id that stored the row ('' without a key); value is the
-- conversation's JSON and size its length; times are Unix milliseconds.
-- Rows expire (expires_at) and are bounded per owner and in total.
CREATE TABLE route_responses (
    owner      TEXT NOT NULL,
    id         TEXT NOT NULL,
    value      TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX route_responses_owner_created ON route_responses(owner, created_at);
CREATE INDEX route_responses_created ON route_responses(created_at);
CREATE INDEX route_responses_expires ON route_responses(expires_at);
