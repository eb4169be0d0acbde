// What the OmniRoute dashboard's pages share on top of the shared look
// (/dashboard/ui/ui.js): the management API call that sends the user back
// to the login form when the session ends, feedback next to an action,
// small formatters. No inline script or style; data only through text.
import { api, h, clear, busy, table as uiTable, empty } from "/dashboard/ui/ui.js";

export const BASE = "/dashboard";
export const enc = encodeURIComponent;

/** table is ui.js table() whose rows become labelled cards on a phone. */
export const table = (columns, rows, opts = {}) => uiTable(columns, rows, { ...opts, stack: true });

/** state is kept in memory only (never in storage) until the page is reloaded. */
export const state = {
  lastKey: "", // the raw key created last, for the playground
};

/**
 * call(method, path, body?) is ui.js api() for the management API: writes
 * always carry a JSON body (the gateway refuses any other body type from
 * a browser), and a 401 outside /api/auth/ (the session ended) reloads the
 * dashboard, which then shows the login form.
 */
export async function call(method, path, body) {
  if (body === undefined && ["POST", "PUT", "PATCH"].includes(method)) body = {};
  try {
    return await api(method, path, body);
  } catch (e) {
    if (e && e.status === 401 && !path.startsWith("/api/auth/")) location.assign(location.pathname + location.search);
    throw e;
  }
}

/** feedback() is where an action's outcome shows, next to it. */
export function feedback(id) { return h("div", { class: "feedback", id, "aria-live": "polite" }); }

/** ok(fb, msg) says in fb that the action worked. */
export function ok(fb, msg = "Saved.") { clear(fb, h("div", { class: "notice ok", role: "status" }, msg)); }

/** fail(fb, err) shows err's message in fb (null clears it). */
export function fail(fb, err) {
  clear(fb, err ? h("div", { class: "error", role: "alert" }, err.message || String(err)) : null);
}

/**
 * act(fb, button, fn, okMsg?) runs fn with the button busy, shows an API
 * error in fb, next to the action that failed, and okMsg when it worked.
 */
export async function act(fb, button, fn, okMsg) {
  fail(fb, null);
  try {
    await (button ? busy(button, fn()) : fn());
    if (okMsg) ok(fb, okMsg);
  } catch (e) {
    fail(fb, e);
  }
}

/** head(title, ...actions) is a page's heading. */
export function head(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", null, title), actions.length ? h("div", { class: "actions" }, actions) : null);
}

/** card(title, ...children) is a section with a heading (title may be null). */
export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", null, title) : null, children);
}

/** values(form) is the form's fields as an object of strings. */
export const values = form => Object.fromEntries(new FormData(form).entries());

/** csv("a, b,,c") is ["a", "b", "c"]. */
export const csv = s => (s || "").split(",").map(x => x.trim()).filter(Boolean);

/** input(attrs) is an <input> (text unless attrs.type says otherwise, autocomplete off). */
export const input = attrs => h("input", { type: "text", autocomplete: "off", ...attrs });

/** select(name, options, value?) — options: strings or [value, label]. */
export function select(attrs, options, value) {
  return h("select", attrs, options.map(o => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h("option", { value: v, selected: v === value }, l);
  }));
}

/** usd(v, digits) is "$0.0012". */
export const usd = (v, digits = 4) => "$" + (v ?? 0).toFixed(digits);

/** stat(label, value) is one figure of a .stats row. */
export const stat = (label, value) => h("div", { class: "stat" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value));

/** kv(obj) shows an object's numbers and strings (nested keys joined) as a definition list. */
export function kv(obj, emptyText = "Nothing to show.") {
  const rows = [];
  const walk = (o, pre) => {
    for (const [k, v] of Object.entries(o || {})) {
      if (Array.isArray(v) && v.some(x => x && typeof x === "object")) v.forEach((x, i) => walk(x, `${pre}${k} ${i + 1} · `));
      else if (v && typeof v === "object" && !Array.isArray(v)) walk(v, `${pre}${k} · `);
      else rows.push([pre + k, Array.isArray(v) ? (v.join(", ") || "none") : v === null ? "—" : String(v)]);
    }
  };
  walk(obj, "");
  if (!rows.length) return h("p", { class: "muted" }, emptyText);
  return h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

/** target(t) is "provider/model ×weight". */
export const target = t => typeof t === "string" ? t : `${t.provider}/${t.model}${t.weight ? ` ×${t.weight}` : ""}`;

/**
 * resolvedList(r) shows what a name resolves to now (the API's "resolved":
 * {targets, strategy, error}): the targets in the order they are tried.
 */
export function resolvedList(r) {
  if (!r) return h("span", { class: "muted" }, "—");
  if (r.error || !(r.targets || []).length) return h("span", { class: "badge error", title: r.error || "" }, "resolves to nothing");
  return h("div", { class: "resolved" },
    h("ol", null, r.targets.map(t => h("li", null, h("code", null, target(t))))),
    r.strategy ? h("span", { class: "badge info" }, r.strategy) : null);
}

/** attempts(list) is a request's attempts (target, connection, status, time, error). */
export function attempts(list) {
  return table([
    { label: "Target", value: a => `${a.provider || ""}/${a.model || ""}` },
    { label: "Connection", key: "connection" },
    { label: "Status", value: a => h("span", { class: ["badge", a.status >= 400 ? "error" : "ok"] }, String(a.status)) },
    { label: "Time", num: true, value: a => `${Math.round((a.elapsed || 0) / 1e6)} ms` },
    { label: "Error", class: "wrap", value: a => a.error || "" },
  ], list, { empty: empty("No attempts recorded", "A cache hit or a refused request reaches no upstream.") });
}
