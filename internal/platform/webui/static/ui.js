// ui.js — the small helpers both dashboards share. An ES module without
// dependencies (uPlot is loaded on the first chart). Everything that puts
// data on the page does it through textContent/attributes, never innerHTML.
//
//   import { api, h, table, route, … } from "./ui/ui.js";

// ---------------------------------------------------------------- API

/** ApiError is what api() throws: the JSON error body's message, the HTTP
 *  status (0 for a network failure), the error code and the parsed body. */
export class ApiError extends Error {
  constructor(message, status, code, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code || "";
    this.body = body;
  }
}

/**
 * api(method, path, body?, opts?) calls a JSON API of the same origin with
 * the session cookie. A body (any value but undefined) is sent as JSON.
 * Returns the parsed JSON (null for an empty answer, text for a non-JSON
 * one). Throws ApiError with the server's message ({"error":{"message"}},
 * {"error":"…"} or {"message":"…"}) on a status ≥ 400.
 * opts: {signal, headers}.
 */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  const init = { method, headers, credentials: "same-origin", signal: opts.signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("Cannot reach the server: " + (e && e.message ? e.message : e), 0, "network", null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    const ct = res.headers.get("Content-Type") || "";
    if (ct.includes("json")) {
      try { data = JSON.parse(text); } catch { data = text; }
    } else {
      data = text;
    }
  }
  if (!res.ok) {
    let msg = "", code = "";
    if (data && typeof data === "object") {
      const e = data.error;
      if (e && typeof e === "object") { msg = e.message || ""; code = e.code || e.type || ""; }
      else if (typeof e === "string") msg = e;
      if (!msg && typeof data.message === "string") msg = data.message;
    } else if (typeof data === "string") {
      msg = data.trim().slice(0, 300);
    }
    throw new ApiError(msg || `${res.status} ${res.statusText || "error"}`, res.status, code, data);
  }
  return data;
}

// ---------------------------------------------------------------- DOM

/**
 * h(tag, attrs?, ...children) builds an element. attrs: "class", "for",
 * on<Event> functions (onClick → click listener), booleans (true sets the
 * attribute, false/null/undefined leave it out), the properties value,
 * checked, selected, disabled, hidden, textContent; everything else is an
 * attribute. Children: Nodes, strings and numbers (as text), arrays
 * (flattened), null/undefined/false (skipped). Never parses HTML.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === "class" || k === "className") {
      const c = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
      if (c) el.className = c;
    } else if (k === "style") {
      throw new Error("h: no inline styles; use a class");
    } else if (["value", "checked", "selected", "disabled", "hidden", "textContent", "indeterminate"].includes(k)) {
      el[k] = v;
    } else {
      el.setAttribute(k === "htmlFor" ? "for" : k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false || c === true) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** clear(el, ...children) replaces el's children. */
export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** id(prefix) returns a unique element id (for label/for pairs). */
export function id(prefix = "f") { return `${prefix}-${++uid}`; }

/**
 * field(label, input, hint?) wraps an input with its <label> (linked by
 * id) and an optional hint: <div class="field">.
 */
export function field(label, input, hint) {
  if (!input.id) input.id = id(input.name || "f");
  const parts = [h("label", { for: input.id }, label), input];
  if (hint) {
    const hid = id("hint");
    input.setAttribute("aria-describedby", hid);
    parts.push(h("div", { class: "hint", id: hid }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** badge(text, kind) — kind: online, offline, ok, warn, error, info. */
export function badge(text, kind = "") { return h("span", { class: ["badge", kind] }, text); }

/** empty(title, text?, ...actions) is an empty state that says what to do next. */
export function empty(title, text, ...actions) {
  return h("div", { class: "empty" }, h("h3", null, title), text ? h("p", null, text) : null,
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

/**
 * table(columns, rows, opts?) renders rows in a table that scrolls inside
 * its own box. columns: [{label, key?, value?(row) → Node|string, num?,
 * class?}]; opts: {empty: string|Node (shown when rows is empty),
 * caption, rowAttrs?(row) → attrs, stack (on a phone each row becomes a
 * card of labelled cells instead of scrolling sideways)}.
 */
export function table(columns, rows, opts = {}) {
  if (!rows || rows.length === 0) {
    const e = opts.empty ?? "Nothing here yet.";
    return e instanceof Node ? e : h("div", { class: "empty" }, h("p", null, e));
  }
  const cell = (tag, c, content) => tag === "td" && opts.stack
    ? h(tag, { class: [c.num && "num", c.class], "data-label": c.label || "" }, h("div", { class: "cell" }, content))
    : h(tag, { class: [c.num && "num", c.class], scope: tag === "th" ? "col" : null }, content);
  return h("div", { class: "table-wrap" },
    h("table", opts.stack ? { class: "stack" } : null,
      opts.caption ? h("caption", { class: "sr-only" }, opts.caption) : null,
      h("thead", null, h("tr", null, columns.map(c => cell("th", c, c.label)))),
      h("tbody", null, rows.map(r => h("tr", opts.rowAttrs ? opts.rowAttrs(r) : null,
        columns.map(c => cell("td", c, c.value ? c.value(r) : r[c.key])))))));
}

// ---------------------------------------------------------------- feedback

/**
 * showError(el, err) shows err's message in an alert next to the action
 * that failed: el is the .error[role=alert] element itself, or a container
 * (a form, a card) in which one is found or appended. showError(el, null)
 * clears it.
 */
export function showError(el, err) {
  let box = el.matches(".error") ? el : el.querySelector(":scope > .error[role=alert]");
  if (!box) {
    if (!err) return;
    box = h("div", { class: "error" });
    el.append(box);
  }
  box.setAttribute("role", "alert");
  box.textContent = err ? (err.message || String(err)) : "";
  box.hidden = !err;
}

/** busy(button, promise) disables the button while the promise runs and returns it. */
export async function busy(button, promise) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try { return await promise; } finally { button.disabled = false; button.removeAttribute("aria-busy"); }
}

/** toast(msg, kind?) shows a short message ("ok", "error" or plain) for a few seconds. */
export function toast(msg, kind = "", ms = 4000) {
  let box = document.querySelector(".toasts");
  if (!box) {
    box = h("div", { class: "toasts", "aria-live": "polite", role: "status" });
    document.body.append(box);
  }
  const t = h("div", { class: ["toast", kind] }, msg);
  box.append(t);
  setTimeout(() => t.remove(), ms);
  return t;
}

/** copyText(text) copies to the clipboard (with a fallback for insecure origins). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch { /* not allowed here: fall back to a selection */ }
  const ta = h("textarea", { class: "sr-only", readonly: true, "aria-hidden": "true" });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  try { document.execCommand("copy"); } finally { ta.remove(); }
}

/** copyButton(text, label?) is a button that copies text and says so. */
export function copyButton(text, label = "Copy") {
  const b = h("button", { type: "button", class: "small", "aria-label": `${label} to clipboard` }, label);
  b.addEventListener("click", async () => {
    await copyText(typeof text === "function" ? text() : text);
    b.textContent = "Copied";
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

/**
 * secretBox(secret, note?) shows a secret (an API key, a security key) that
 * the server shows only once, with a copy button and a warning.
 */
export function secretBox(secret, note = "Copy it now: it is shown only once.") {
  return h("div", { class: "secret-wrap" },
    h("div", { class: "secret" }, h("code", { "aria-label": "Secret" }, secret), copyButton(secret)),
    h("p", { class: "secret-note" }, note));
}

/**
 * confirmDialog(message, opts?) asks in a modal <dialog> and resolves to
 * true or false. opts: {title, confirm: "Delete", danger: true}.
 */
export function confirmDialog(message, opts = {}) {
  return new Promise(resolve => {
    const ok = h("button", { type: "submit", value: "ok", class: opts.danger === false ? "primary" : "danger solid" }, opts.confirm || "Confirm");
    const cancel = h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel");
    const titleId = id("dlg");
    const dlg = h("dialog", { "aria-labelledby": titleId },
      h("form", { method: "dialog" },
        h("h2", { id: titleId }, opts.title || "Are you sure?"),
        h("p", null, message),
        h("div", { class: "form-actions" }, cancel, ok)));
    dlg.addEventListener("close", () => { resolve(dlg.returnValue === "ok"); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// ---------------------------------------------------------------- theme

const THEME_KEY = "omni-theme";

/** theme() is the theme in effect: "light" or "dark". */
export function theme() {
  const t = document.documentElement.dataset.theme;
  if (t === "light" || t === "dark") return t;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** setTheme("light"|"dark"|"") applies and remembers the theme ("" follows the system, as theme.js does). */
export function setTheme(t) {
  document.documentElement.dataset.theme = t || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  try { t ? localStorage.setItem(THEME_KEY, t) : localStorage.removeItem(THEME_KEY); } catch { /* storage off */ }
  document.dispatchEvent(new CustomEvent("themechange", { detail: theme() }));
}

/** themeToggle() is a button that switches between light and dark. */
export function themeToggle() {
  const b = h("button", { type: "button", class: "icon-button theme-toggle" });
  const label = () => {
    const next = theme() === "dark" ? "light" : "dark";
    b.textContent = theme() === "dark" ? "☀" : "☾";
    b.setAttribute("aria-label", `Switch to ${next} theme`);
    b.title = `Switch to ${next} theme`;
  };
  b.addEventListener("click", () => { setTheme(theme() === "dark" ? "light" : "dark"); label(); });
  document.addEventListener("themechange", label); // theme.js following the system
  label();
  return b;
}

// ---------------------------------------------------------------- layout

/**
 * layout({brand, links, actions}) builds the page skeleton into
 * document.body and returns {main, nav, setActive(href)}. links:
 * [{href, label}] or {section: "Label"} separators; actions: Nodes for
 * the top bar's right side (the theme toggle is added). The nav folds
 * behind a menu button under 800px.
 */
export function layout({ brand, links = [], actions = [] }) {
  const nav = h("nav", { class: "sidenav", id: "nav", "aria-label": "Main" },
    links.map(l => l.section ? h("div", { class: "nav-label" }, l.section) : h("a", { href: l.href }, l.label)));
  const toggle = h("button", { type: "button", class: "icon-button nav-toggle", "aria-controls": "nav", "aria-expanded": "false", "aria-label": "Menu" }, "☰");
  const app = h("div", { class: "app" },
    h("a", { class: "skip-link", href: "#main" }, "Skip to content"),
    h("header", { class: "topbar" }, toggle, brand, h("span", { class: "spacer" }), actions, themeToggle()),
    nav,
    h("main", { class: "content", id: "main", tabindex: "-1" }));
  const setOpen = open => { app.classList.toggle("nav-open", open); toggle.setAttribute("aria-expanded", String(open)); };
  toggle.addEventListener("click", () => setOpen(!app.classList.contains("nav-open")));
  nav.addEventListener("click", e => { if (e.target.closest("a")) setOpen(false); });
  document.addEventListener("keydown", e => { if (e.key === "Escape") setOpen(false); });
  document.body.prepend(app);
  const main = app.querySelector("main");
  return {
    main, nav,
    setActive(path) {
      for (const a of nav.querySelectorAll("a")) {
        const href = new URL(a.href, location.href).pathname;
        const on = href === path || (href.length > 1 && !href.endsWith("/") && path.startsWith(href + "/"));
        if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
      }
    },
  };
}

// ---------------------------------------------------------------- router

let router = null;

/**
 * route(routes, opts) starts a History-API router. routes: [{path:
 * "/keys/:id", title, render(ctx)}], matched in order against the path
 * below opts.base ("/dashboard"). render gets ctx = {params, query
 * (URLSearchParams), path, signal (aborted when the user leaves the page)}
 * and returns a Node, an array of Nodes, or a promise of one; it is put
 * into opts.mount. Same-origin <a href> clicks under base navigate without
 * a reload. opts: {base, mount, notFound(ctx), onRoute(path, route),
 * title (appended to the page title)}.
 * Returns {navigate(path, {replace}), reload(), path()}.
 */
export function route(routes, opts) {
  const base = (opts.base || "").replace(/\/$/, "");
  const compiled = routes.map(r => {
    const names = [];
    const re = new RegExp("^" + r.path.replace(/\/$/, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      .replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/]+)"; }) + "/?$");
    return { ...r, re, names };
  });
  let ctrl = null;
  let seq = 0;
  const current = () => {
    const p = location.pathname;
    return (p.startsWith(base) ? p.slice(base.length) : p) || "/";
  };
  async function render() {
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    const mine = ++seq;
    const path = current();
    let match = null, params = {};
    for (const r of compiled) {
      const m = r.re.exec(path === "/" ? "" : path.replace(/\/$/, ""));
      if (m) { match = r; r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); }); break; }
    }
    const ctx = { params, query: new URLSearchParams(location.search), path, signal: ctrl.signal };
    if (opts.onRoute) opts.onRoute(path, match);
    document.title = [match && match.title, opts.title].filter(Boolean).join(" · ");
    clear(opts.mount, h("p", { class: "loading" }, "Loading…"));
    let out;
    try {
      out = match ? await match.render(ctx) : (opts.notFound ? await opts.notFound(ctx) : empty("Page not found", "Pick a page from the menu."));
    } catch (err) {
      if (err && err.name === "AbortError") return;
      out = h("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
    }
    if (mine !== seq) return;
    clear(opts.mount, out);
    opts.mount.focus({ preventScroll: true });
    scrollTo(0, 0);
  }
  function navigate(to, { replace = false } = {}) {
    const url = to.startsWith(base + "/") || to === base ? to : base + to;
    history[replace ? "replaceState" : "pushState"](null, "", url);
    render();
  }
  document.addEventListener("click", e => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest("a[href]");
    if (!a || a.target || a.hasAttribute("download")) return;
    const u = new URL(a.href, location.href);
    if (u.origin !== location.origin || !(u.pathname === base || u.pathname.startsWith(base + "/"))) return;
    if (u.pathname === location.pathname && u.hash) return;
    e.preventDefault();
    history.pushState(null, "", u.pathname + u.search);
    render();
  });
  addEventListener("popstate", render);
  router = { navigate, reload: render, path: current };
  render();
  return router;
}

/** navigate(path) moves the running router to path (below its base). */
export function navigate(path, opts) { if (router) router.navigate(path, opts); else location.assign(path); }

// ---------------------------------------------------------------- formats

const toDate = t => t instanceof Date ? t : typeof t === "number" ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);

/** formatTime(t) — t: Date, ISO string, unix seconds or ms — as "Dec 4, 2026, 23:54:25" in local time; "—" when empty. */
export function formatTime(t) {
  if (t === null || t === undefined || t === "" || t === 0) return "—";
  const d = toDate(t);
  if (isNaN(d)) return String(t);
  return d.toLocaleString("en", { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23" });
}

/** formatAgo(t) — "just now", "5 min ago", "3 h ago", "2 d ago"; "never" when empty. */
export function formatAgo(t, now = Date.now()) {
  if (t === null || t === undefined || t === "" || t === 0) return "never";
  const s = Math.round((now - toDate(t).getTime()) / 1000);
  if (isNaN(s)) return String(t);
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** formatBytes(n) — "0 B", "1.5 KB", "12 MB" (powers of 1024). */
export function formatBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return "—";
  const u = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0, v = Math.abs(n);
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(Math.round(v)) : v < 10 ? v.toFixed(1) : String(Math.round(v));
  return (n < 0 ? "-" : "") + s + " " + u[i];
}

/** formatNumber(n, {compact, digits}) — "1,234,567" or compact "1.2M". */
export function formatNumber(n, opts = {}) {
  if (n === null || n === undefined || isNaN(n)) return "—";
  return new Intl.NumberFormat("en", opts.compact
    ? { notation: "compact", maximumFractionDigits: 1 }
    : { maximumFractionDigits: opts.digits ?? 2 }).format(n);
}

/** formatDuration(ms) — "850 ms", "1.2 s", "3 min 5 s". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** formatCost(usd) — "$0.0012", "$3.40". */
export function formatCost(usd) {
  if (usd === null || usd === undefined || isNaN(usd)) return "—";
  const digits = usd !== 0 && Math.abs(usd) < 0.01 ? 4 : 2;
  return "$" + usd.toFixed(digits);
}

// ---------------------------------------------------------------- live updates

/**
 * sse(url, onMessage, opts?) follows a Server-Sent Events stream of the
 * same origin. onMessage(data, event) gets each message's data parsed as
 * JSON when it is JSON. It reconnects after an error (1 s, doubling to
 * 30 s). opts: {events: ["name", …] (named events instead of "message"),
 * signal (closes the stream), onState(state) ("open" | "reconnecting")}.
 * Returns {close()}.
 */
export function sse(url, onMessage, opts = {}) {
  let es = null, timer = null, closed = false, delay = 1000;
  const names = opts.events || ["message"];
  const handler = ev => {
    let data = ev.data;
    try { data = JSON.parse(ev.data); } catch { /* plain text */ }
    onMessage(data, ev);
  };
  function connect() {
    if (closed) return;
    es = new EventSource(url, { withCredentials: true });
    es.onopen = () => { delay = 1000; if (opts.onState) opts.onState("open"); };
    es.onerror = () => {
      if (closed) return;
      if (opts.onState) opts.onState("reconnecting");
      es.close();
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
    for (const n of names) es.addEventListener(n, handler);
  }
  function close() {
    closed = true;
    clearTimeout(timer);
    if (es) es.close();
  }
  if (opts.signal) {
    if (opts.signal.aborted) return { close };
    opts.signal.addEventListener("abort", close);
  }
  connect();
  return { close };
}

/** poll(fn, ms, signal) calls fn now and every ms until signal aborts (errors are passed to opts.onError). */
export function poll(fn, ms, signal, onError) {
  let timer = null;
  const tick = async () => {
    try { await fn(); } catch (e) { if (onError) onError(e); }
    if (!signal || !signal.aborted) timer = setTimeout(tick, ms);
  };
  if (signal) signal.addEventListener("abort", () => clearTimeout(timer));
  tick();
}

// ---------------------------------------------------------------- charts

let uplotReady = null;
function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotReady) {
    uplotReady = new Promise((resolve, reject) => {
      const dir = new URL("./vendor/", import.meta.url);
      document.head.append(h("link", { rel: "stylesheet", href: new URL("uPlot.min.css", dir).href }));
      const s = h("script", { src: new URL("uPlot.iife.min.js", dir).href });
      s.addEventListener("load", () => resolve(window.uPlot));
      s.addEventListener("error", () => { uplotReady = null; reject(new Error("could not load the chart library")); });
      document.head.append(s);
    });
  }
  return uplotReady;
}

/**
 * chart(el, opts) draws a time-series chart into el (uPlot, loaded on first
 * use) and resolves to {update(x, series), destroy()}. opts: {x: [unix
 * seconds…], series: [{label, values: [number|null…]}], height (220),
 * format(v) for the y axis and legend (formatNumber), bars (false), stacked
 * areas are not drawn}. It follows el's width and the theme.
 */
export async function chart(el, opts) {
  const uPlot = await loadUPlot();
  el.classList.add("chart");
  let plot = null;
  let x = opts.x || [], series = opts.series || [];
  const fmt = opts.format || (v => formatNumber(v, { compact: true }));
  const build = () => {
    const css = getComputedStyle(document.documentElement);
    const v = n => css.getPropertyValue(n).trim();
    const axis = { stroke: v("--chart-axis"), grid: { stroke: v("--chart-grid"), width: 1 }, ticks: { stroke: v("--chart-grid"), width: 1 } };
    if (plot) plot.destroy();
    plot = new uPlot({
      width: Math.max(el.clientWidth, 200),
      height: opts.height || 220,
      cursor: { drag: { x: false, y: false } },
      legend: { show: opts.legend !== false },
      // A flat series (all zero on a quiet day) gets a range of its own:
      // uPlot's would be too narrow for the axis labels to tell apart.
      scales: { x: { time: true }, y: { range: (u, lo, hi) => lo === hi || lo === null ? [Math.min(0, lo || 0), Math.max(1, (hi || 0) * 2)] : uPlot.rangeNum(lo, hi, 0.1, true) } },
      axes: [axis, { ...axis, size: 56, values: (u, vals) => vals.map(fmt) }],
      series: [{}, ...series.map((s, i) => {
        const color = v(`--chart-${(i % 6) + 1}`);
        return {
          label: s.label, stroke: color, width: 2, value: (u, val) => val === null || val === undefined ? "—" : fmt(val),
          fill: opts.bars ? color : undefined,
          paths: opts.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
          points: { show: x.length < 40 },
        };
      })],
    }, [x, ...series.map(s => s.values)], el);
  };
  build();
  let lastW = el.clientWidth;
  const ro = new ResizeObserver(() => {
    if (!plot || el.clientWidth === lastW) return;
    lastW = el.clientWidth;
    plot.setSize({ width: Math.max(lastW, 200), height: opts.height || 220 });
  });
  ro.observe(el);
  const onTheme = () => build();
  document.addEventListener("themechange", onTheme);
  return {
    update(nx, nseries) {
      const sameShape = nseries.length === series.length && nseries.every((s, i) => s.label === series[i].label);
      x = nx; series = nseries;
      if (sameShape) plot.setData([x, ...series.map(s => s.values)]); else build();
    },
    destroy() { ro.disconnect(); document.removeEventListener("themechange", onTheme); if (plot) plot.destroy(); plot = null; },
  };
}
