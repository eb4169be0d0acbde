// Usage: requests, tokens and cost over a period (charts), a breakdown by
// provider, model, key, modality or unit (each row filters the page to
// it, but units), latency
// percentiles per provider, a live tail of new requests (server-sent
// events) and the request log with paging and each request's attempts.
import { h, clear, field, empty, chart, sse, navigate, formatTime, formatNumber } from "/dashboard/ui/ui.js";
import { call, values, input, select, card, head, usd, stat, attempts, table } from "../lib.js";

const PERIODS = ["1h", "24h", "7d", "30d"];
const BY = ["provider", "model", "key", "modality", "unit"];
const MODALITIES = ["chat", "rerank", "moderation", "image", "audio", "search", "video", "music"];

export default async function usagePage(ctx) {
  const params = ctx.query;
  const period = PERIODS.includes(params.get("period")) ? params.get("period") : "24h";
  const filt = { provider: params.get("provider") || "", model: params.get("model") || "", apiKeyId: params.get("apiKeyId") || "",
    modality: MODALITIES.includes(params.get("modality")) ? params.get("modality") : "" };
  const by = BY.includes(params.get("by")) ? params.get("by") : "provider";
  const q = new URLSearchParams({ period });
  for (const [k, v] of Object.entries(filt)) if (v) q.set(k, v);
  const go = (changes) => {
    const n = new URLSearchParams(q);
    n.set("by", by);
    for (const [k, v] of Object.entries(changes)) if (v) n.set(k, v); else n.delete(k);
    navigate(`/usage?${n}`);
  };
  const seg = h("div", { class: "segmented", role: "group", "aria-label": "Period" }, PERIODS.map(p =>
    h("button", { type: "button", "aria-pressed": String(p === period), id: `period-${p}`, onClick: () => go({ period: p }) }, p)));

  const keys = await call("GET", "/api/keys").catch(() => ({ keys: [] }));
  const keyList = keys.keys || [];
  const filters = h("form", { id: "usage-filters", class: "toolbar" },
    field("Provider", input({ name: "provider", value: filt.provider })),
    field("Model", input({ name: "model", value: filt.model })),
    field("Key", select({ name: "apiKeyId" }, [["", "all keys"], ...keyList.map(k => [k.id, k.name])], filt.apiKeyId)),
    field("Modality", select({ name: "modality" }, [["", "all"], ...MODALITIES.map(m => [m, m])], filt.modality)),
    h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", ev => { ev.preventDefault(); go(values(filters)); });

  const totals = h("div", { class: "stats", id: "usage-totals" });
  const cReq = h("div", { id: "chart-requests" });
  const cTok = h("div", { id: "chart-tokens" });
  const cCost = h("div", { id: "chart-cost" });
  const groups = h("div", { id: "usage-groups" });
  const lat = h("div", { id: "usage-latency" });
  const tailBox = h("div", { id: "usage-tail" });
  const logs = h("div", { id: "usage-logs" });
  const bySel = h("div", { class: "segmented", role: "group", "aria-label": "Group by" }, BY.map(g =>
    h("button", { type: "button", "aria-pressed": String(g === by), id: `by-${g}`, onClick: () => { const n = new URLSearchParams(q); n.set("by", g); navigate(`/usage?${n}`); } }, `By ${g}`)));

  const [hist, gs, tel] = await Promise.all([
    call("GET", `/api/usage/history?${q}`),
    call("GET", `/api/usage/groups?${new URLSearchParams([...q, ["by", by]])}`),
    call("GET", "/api/telemetry/summary").catch(() => ({})),
  ]);
  const b = hist.buckets || [];
  const xs = b.map(x => Date.parse(x.time) / 1000);
  const t = hist.totals || {};
  clear(totals, stat("Requests", formatNumber(t.requests ?? 0)), stat("Errors", formatNumber(t.errors ?? 0)),
    stat("Tokens", formatNumber(t.totalTokens ?? 0, { compact: true })), stat("Cost", usd(t.costUsd)));

  const keyNames = Object.fromEntries(keyList.map(k => [k.id, k.name]));
  const filterName = { provider: "provider", model: "model", key: "apiKeyId", modality: "modality" }[by];
  const groupKey = g => by === "modality" ? g.key || "chat" : g.key; // chat's modality is ""
  clear(groups, table([
    { label: by[0].toUpperCase() + by.slice(1), value: g => {
      const label = (by === "key" ? keyNames[g.key] || g.key : groupKey(g)) || (by === "key" ? "no key" : "none (refused)");
      if (!groupKey(g) || !filterName) return label;
      const n = new URLSearchParams(q); n.set(filterName, groupKey(g)); n.set("by", by);
      return h("a", { href: `/dashboard/usage?${n}` }, label);
    } },
    { label: "Requests", num: true, key: "requests" }, { label: "Errors", num: true, key: "errors" },
    { label: "Tokens", num: true, key: "totalTokens" },
    ...(by === "unit" ? [{ label: "Used", num: true, value: g => `${formatNumber(g.quantity ?? 0)} ${g.key}${g.quantity === 1 ? "" : "s"}` }] : []),
    { label: "Cost", num: true, value: g => usd(g.costUsd) },
    { label: "Avg latency", num: true, value: g => `${Math.round(g.avgLatencyMs || 0)} ms` },
  ], gs.groups || [], { empty: empty("No requests in this period", "Send one from the Playground or a client, or pick a longer period.") }));
  clear(lat, table([
    { label: "Provider", value: r => r[0] },
    { label: "p50", num: true, value: r => `${r[1].p50} ms` }, { label: "p95", num: true, value: r => `${r[1].p95} ms` },
    { label: "p99", num: true, value: r => `${r[1].p99} ms` }, { label: "Requests", num: true, value: r => r[1].count },
  ], Object.entries(tel.providers || {}), { empty: empty("No answered requests in the last hour") }));

  startTail(tailBox, filt, ctx.signal);
  await logPage(logs, q, "");
  const out = [head("Usage", seg), h("section", { class: "card" }, filters), totals,
    h("div", { class: "grid charts" },
      card("Requests and errors", cReq), card("Tokens", cTok), card("Cost (USD)", cCost)),
    card("Breakdown", bySel, groups), card("Latency by provider (last hour)", lat),
    card("Live", tailBox), card("Request log", logs)];
  // Charts measure their box: draw them once the page is on screen.
  setTimeout(() => {
    if (ctx.signal.aborted) return;
    draw(cReq, xs, [{ label: "requests", values: b.map(x => x.requests) }, { label: "errors", values: b.map(x => x.errors) }], ctx.signal);
    draw(cTok, xs, [{ label: "input", values: b.map(x => x.inputTokens) }, { label: "output", values: b.map(x => x.outputTokens) }], ctx.signal);
    draw(cCost, xs, [{ label: "cost", values: b.map(x => x.costUsd) }], ctx.signal, v => usd(v));
  });
  return out;
}

async function draw(el, x, series, signal, format) {
  try {
    const c = await chart(el, { x, series, height: 180, format });
    signal.addEventListener("abort", () => c.destroy());
  } catch {
    // Without the chart library, the numbers as a table.
    clear(el, table([{ label: "Time", value: r => r[0] }, ...series.map((s, i) => ({ label: s.label, num: true, value: r => r[i + 1] }))],
      x.map((t, i) => [formatTime(t), ...series.map(s => s.values[i])])));
  }
}

// startTail shows new requests as the gateway records them (server-sent
// events), newest on top, until the page is left.
function startTail(el, filt, signal) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filt)) if (v) q.set(k, v);
  const list = h("ul", { id: "tail-list", class: "tail" });
  const status = h("p", { class: "muted", role: "status" }, "Waiting for new requests…");
  clear(el, status, list);
  sse(`/api/usage/tail?${q}`, r => {
    status.textContent = "New requests appear here as they are recorded.";
    list.prepend(h("li", null, h("span", { class: ["badge", r.status >= 400 ? "error" : "ok"] }, String(r.status)), " ",
      `${formatTime(r.time)} · ${r.model} → ${r.provider || "—"} · ${usageOf(r)} · ${r.latencyMs} ms`));
    while (list.children.length > 20) list.lastChild.remove();
  }, { events: ["usage"], signal, onState: s => { if (s === "reconnecting") status.textContent = "Live tail reconnecting…"; } });
}

// usageOf says what a request used: its tokens, and for a modality
// beyond chat (rerank, moderation …) its amount in its own unit.
function usageOf(r) {
  const tokens = `${(r.inputTokens || 0) + (r.outputTokens || 0)} tokens`;
  if (!r.modality) return tokens;
  const unit = r.unit ? `${r.quantity || 0} ${r.unit.replace("_", " ")}${r.quantity === 1 ? "" : "s"}` : "";
  return [r.modality, unit, r.inputTokens ? tokens : ""].filter(Boolean).join(" · ");
}

async function logPage(el, q, cursor) {
  const lq = new URLSearchParams(q);
  lq.set("limit", "25");
  if (cursor) lq.set("cursor", cursor);
  const data = await call("GET", `/api/usage/request-logs?${lq}`);
  const detail = h("div", { id: "log-detail" });
  const rows = table([
    { label: "Time", value: r => formatTime(r.time) }, { label: "Model", key: "model" }, { label: "Provider", key: "provider" },
    { label: "Status", value: r => h("span", { class: ["badge", r.status >= 400 ? "error" : "ok"] }, String(r.status)) },
    { label: "Usage", value: usageOf },
    { label: "Latency", num: true, value: r => `${r.latencyMs ?? ""} ms` }, { label: "Cost", num: true, value: r => usd(r.costUsd, 6) },
    { label: "", class: "actions", value: r => h("button", { type: "button", class: "small",
      onClick: () => clear(detail, h("h3", null, `Attempts of ${r.model} at ${formatTime(r.time)}`), attempts(r.attemptList || [])) }, "Attempts") },
  ], data.logs || [], { empty: empty("No requests in this period", "Send one from the Playground or a client.") });
  const older = data.nextCursor ? h("button", { type: "button", id: "logs-next", onClick: () => logPage(el, q, data.nextCursor) }, "Older") : null;
  const newest = cursor ? h("button", { type: "button", onClick: () => logPage(el, q, "") }, "Newest") : null;
  clear(el, rows, older || newest ? h("div", { class: "pager" }, newest, older) : null, detail);
}
