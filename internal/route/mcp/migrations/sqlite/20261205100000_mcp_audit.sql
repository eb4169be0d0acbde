-- The MCP server's audit log (route/mcp): one row per tool call, its
-- arguments masked and capped; pruned by age and count.
CREATE TABLE gateway_mcp_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    tool        TEXT NOT NULL,
    transport   TEXT NOT NULL,
    caller      TEXT NOT NULL,
    api_key_id  TEXT NOT NULL DEFAULT '',
    success     INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    arguments   TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gateway_mcp_audit_at ON gateway_mcp_audit (at);
CREATE INDEX gateway_mcp_audit_tool ON gateway_mcp_audit (tool, at);
