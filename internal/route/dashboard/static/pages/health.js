// Health: monitoring health, provider breakers with reset (one or all:
// cooldowns and lockouts too), connection cooldowns, model lockouts, the
// response cache and idempotency with their stats and clear.
import { h, clear, empty, confirmDialog, formatTime, formatNumber, formatBytes, formatDuration } from "/dashboard/ui/ui.js";
import { call, act, feedback, ok, card, head, stat, table } from "../lib.js";

export default async function healthPage() {
  const root = h("div", { id: "health" });
  const draw = async () => {
    const [res, cool, rl, cache, mon] = await Promise.all([
      call("GET", "/api/resilience"),
      call("GET", "/api/resilience/model-cooldowns").catch(() => ({ lockouts: [] })),
      call("GET", "/api/rate-limits").catch(() => ({ connections: [] })),
      call("GET", "/api/cache/stats").catch(() => null),
      call("GET", "/api/monitoring/health").catch(() => null),
    ]);
    // A button whose failure shows next to it.
    const button = (label, text, f, attrs = {}) => {
      const fb = feedback();
      return [h("button", { type: "button", class: "small", "aria-label": label, ...attrs,
        onClick: ev => act(fb, ev.currentTarget, async () => { await f(); await draw(); }) }, text), fb];
    };
    const reset = (body, label, id) => button(label, "Reset", () => call("POST", "/api/resilience/reset", body), { id });
    const breakers = res.breakers || [];
    clear(root,
      mon ? h("div", { class: "stats", id: "monitoring" },
        h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Status"),
          h("div", { class: "stat-value" }, h("span", { class: ["badge", mon.status === "healthy" || mon.status === "ok" ? "ok" : "warn"] }, mon.status))),
        stat("Providers", `${mon.activeCount} / ${mon.configuredCount} active`),
        stat("Open breakers", formatNumber(mon.openBreakers)),
        stat("Usage queued / dropped", `${mon.usageQueued} / ${mon.usageDropped}`)) : null,
      card("Circuit breakers",
        h("div", { id: "breakers" }, table([
          { label: "Provider", value: b => h("strong", null, b.provider) },
          { label: "State", value: b => h("span", { class: ["badge", b.state === "open" ? "error" : b.state === "half-open" ? "warn" : "ok"] }, b.state) },
          { label: "Failures", num: true, key: "consecutive_failures" },
          { label: "Open until", value: b => formatTime(b.open_until) },
          { label: "Last status", key: "last_status" },
          { label: "", class: "actions", value: b => reset({ provider: b.provider }, `Reset ${b.provider}`, `reset-${b.provider}`) },
        ], breakers, { empty: empty("All breakers closed", "Every provider is taking requests. A provider that keeps failing opens its breaker; it shows here with a reset.") })),
        h("div", { class: "form-actions" }, button("Reset all breakers, cooldowns and lockouts", "Reset all breakers, cooldowns and lockouts",
          () => call("POST", "/api/resilience/reset", { all: true }), { id: "reset-all", class: null }))),
      card("Connection cooldowns", h("div", { id: "cooldowns" }, table([
        { label: "Connection", key: "connection" },
        { label: "Cooling", value: c => c.cooling ? h("span", { class: "badge error" }, `yes, ${Math.ceil((c.remaining_ms || 0) / 1000)} s`) : h("span", { class: "badge ok" }, "no") },
        { label: "Failures", num: true, key: "consecutive_failures" },
        { label: "Last status", key: "last_status" },
        { label: "", class: "actions", value: c => reset({ provider: c.provider }, `Reset ${c.connection}`) },
      ], rl.connections || [], { empty: empty("No connection is cooling down", "A connection that is rate-limited or failing rests here for a while.") }))),
      card("Model lockouts", h("div", { id: "lockouts" }, table([
        { label: "Provider", key: "provider" }, { label: "Connection", key: "connection" }, { label: "Model", key: "model" },
        { label: "Until", value: l => formatTime(l.until) }, { label: "Status", key: "status" },
        { label: "", class: "actions", value: l => button(`Clear lockout of ${l.model}`, "Clear",
          () => call("DELETE", "/api/resilience/model-cooldowns", { provider: l.provider, model: l.model })) },
      ], cool.lockouts || [], { empty: cool.enabled ? empty("No model is locked out") : empty("Model lockouts are off", "Turn them on in Settings → Resilience.") }))),
      cacheCard(cache, draw));
  };
  await draw();
  return [head("Health"), root];
}

function cacheCard(cache, draw) {
  if (!cache) return card("Cache and idempotency", empty("No cache configured", "Turn the response cache on in the gateway's configuration."));
  const fb = feedback();
  const c = cache.semanticCache || {}, i = cache.idempotency || {};
  const clearBtn = h("button", { type: "button", class: "danger", id: "cache-clear" }, "Clear cache and idempotency keys");
  clearBtn.addEventListener("click", async () => {
    if (!await confirmDialog("Clear every cached answer and idempotency key? Repeated requests reach the upstream again.", { title: "Clear cache", confirm: "Clear" })) return;
    act(fb, clearBtn, async () => {
      const r = await call("DELETE", "/api/cache/stats");
      const n = r.cleared || {};
      await draw();
      ok(document.getElementById("cache-feedback"), `Cleared ${n.memory ?? 0} in memory, ${n.db ?? 0} stored, ${n.idempotency ?? 0} idempotency keys.`);
    });
  });
  fb.id = "cache-feedback";
  return h("section", { class: "card", id: "cache-stats" }, h("h2", null, "Cache and idempotency"),
    h("div", { class: "stats" },
      stat("Cached answers", `${formatNumber(c.memorySize ?? 0)} / ${formatNumber(c.memoryMaxSize ?? 0)}`),
      stat("Memory", formatBytes(c.memoryBytes ?? 0)),
      stat("Stored", formatNumber(c.dbSize ?? 0)),
      stat("Hit rate", `${Math.round((c.hitRate || 0) * 100)}% (${c.hits ?? 0} / ${(c.hits ?? 0) + (c.misses ?? 0)})`),
      stat("TTL", c.ttlMs >= 3600e3 && c.ttlMs % 3600e3 === 0 ? `${c.ttlMs / 3600e3} h` : formatDuration(c.ttlMs)),
      stat("Tier", c.tier || "—"),
      h("div", { class: "stat", id: "idempotency-stats" }, h("div", { class: "stat-label" }, "Idempotency keys"), h("div", { class: "stat-value" }, formatNumber(i.activeKeys ?? 0)),
        h("div", { class: "hint" }, `window ${formatDuration(i.windowMs)}`))),
    h("div", { class: "form-actions" }, clearBtn), fb);
}
