// Playground: send a chat to a model, alias or combo through the
// gateway's OpenAI endpoint with a gateway key (never the management
// cookie), watch it stream, and see which target answered, the attempts,
// tokens, cost and latency.
import { h, clear, field, empty, ApiError } from "/dashboard/ui/ui.js";
import { call, act, feedback, values, input, card, head, state, stat, attempts as attemptTable } from "../lib.js";

export default async function playgroundPage() {
  const cat = await call("GET", "/api/models/catalog");
  const groups = [
    ["Models", (cat.providers || []).flatMap(p => (p.models || []).filter(m => !m.hidden).map(m => m.id))],
    ["Aliases", (cat.aliases || []).map(a => a.name)],
    ["Combos", (cat.combos || []).map(c => c.name)],
  ];
  const fb = feedback();
  const out = h("pre", { class: "answer", id: "pg-answer", "aria-live": "polite" });
  const info = h("div", { class: "stats", id: "pg-info" });
  const attempts = h("div", { id: "pg-attempts" });
  const model = h("select", { name: "model", id: "pg-model" },
    groups.filter(([, l]) => l.length).map(([label, l]) => h("optgroup", { label }, l.map(m => h("option", { value: m }, m)))));
  const send = h("button", { type: "submit", class: "primary", id: "pg-send" }, "Send");
  const form = h("form", { id: "pg-form" },
    h("div", { class: "form-row" },
      field("Model, alias or combo", model),
      field("Gateway key", input({ name: "key", id: "pg-key", type: "password", value: state.lastKey, autocomplete: "off" }), "Kept in this page only; the key created last on the Keys page is filled in.")),
    field("Message", h("textarea", { name: "message", id: "pg-message", placeholder: "Say hello" })),
    h("div", { class: "form-actions" }, send), fb);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const v = values(form);
    state.lastKey = v.key;
    act(fb, send, () => chat(v, out, info, attempts));
  });
  const none = groups.every(([, l]) => !l.length);
  return [head("Playground"),
    none ? empty("No models yet", "Add a provider with models first, then come back to try them.", h("a", { class: "button primary", href: "/dashboard/providers" }, "Add a provider")) : null,
    card(null, form), card("Answer", out, info, attempts)];
}

async function chat(v, out, info, attempts) {
  out.textContent = "";
  clear(info);
  clear(attempts);
  const t0 = performance.now();
  const headers = { "Content-Type": "application/json" };
  if (v.key) headers.Authorization = `Bearer ${v.key}`;
  const r = await fetch("/v1/chat/completions", { method: "POST", headers, credentials: "omit",
    body: JSON.stringify({ model: v.model, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: v.message || "Hello" }] }) });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { const e = await r.json(); msg = e.error?.message || msg; } catch { /* not JSON */ }
    throw new ApiError(r.status === 401 && !v.key ? "Paste a gateway key (create one on the Keys page)." : msg, r.status);
  }
  const target = r.headers.get("X-OmniRoute-Model") || "";
  let first = 0, usage = null, buf = "";
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of ev.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const d = line.slice(5).trim();
        if (d === "[DONE]") continue;
        try {
          const j = JSON.parse(d);
          const piece = j.choices?.[0]?.delta?.content;
          if (piece) { if (!first) first = performance.now(); out.append(piece); }
          if (j.usage) usage = j.usage;
        } catch { /* a comment or keep-alive */ }
      }
    }
  }
  const ms = Math.round(performance.now() - t0);
  clear(info,
    h("div", { class: "stat", id: "pg-target" }, h("div", { class: "stat-label" }, "Answered by"), h("div", { class: "stat-value small" }, target || "unknown")),
    stat("Latency", `${ms} ms`),
    first ? stat("First token", `${Math.round(first - t0)} ms`) : null,
    usage ? stat("Tokens in / out", `${usage.prompt_tokens ?? "?"} / ${usage.completion_tokens ?? "?"}`) : null);
  // The attempts and cost as the usage log recorded them (written a
  // moment after the answer ends).
  const since = Date.now() - ms - 2000;
  for (let i = 0; i < 20; i++) {
    await new Promise(res => setTimeout(res, 250));
    const logs = await call("GET", "/api/usage/request-logs?limit=1");
    const rec = (logs.logs || [])[0];
    if (rec && Date.parse(rec.time) >= since) {
      const cost = stat("Cost", `$${(rec.costUsd ?? 0).toFixed(6)}`);
      cost.id = "pg-cost";
      info.append(cost);
      clear(attempts, h("h3", null, "Attempts"), attemptTable(rec.attemptList || []));
      return;
    }
  }
  clear(attempts, h("p", { class: "muted" }, "The request log has not recorded this request yet: see Usage."));
}
