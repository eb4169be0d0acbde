// A page made of every shared component, for the browser test of the look.
import {
  api, h, table, field, badge, empty, showError, busy, toast, secretBox, confirmDialog,
  layout, route, chart, formatTime, formatAgo, formatBytes, formatNumber, formatDuration, formatCost,
} from "/ui/ui.js";

const { main, setActive } = layout({
  brand: h("a", { class: "brand", href: "/" }, h("img", { src: "/ui/favicon.svg", alt: "" }), "Omni Look"),
  links: [{ section: "Overview" }, { href: "/", label: "Components" }, { href: "/empty", label: "Empty states" }, { section: "Settings" }, { href: "/form", label: "Form" }],
  actions: [h("span", { class: "user" }, "admin@example.com"), h("button", { type: "button", class: "small" }, "Log out")],
});

const now = 1764892800; // a fixed time so screenshots are stable
const x = Array.from({ length: 24 }, (_, i) => now - (23 - i) * 3600);

function components(ctx) {
  const chartBox = h("div", { id: "chart" });
  queueMicrotask(async () => {
    await chart(chartBox, { x, series: [
      { label: "openai", values: x.map((_, i) => 40 + 30 * Math.sin(i / 3)) },
      { label: "anthropic", values: x.map((_, i) => 25 + 15 * Math.cos(i / 4)) },
    ] });
    document.body.dataset.chart = "1";
  });
  const rows = Array.from({ length: 6 }, (_, i) => ({
    id: `req_${1000 + i}_abcdefghijklmnop`, model: i % 2 ? "gpt-4o-mini" : "claude-3-5-sonnet-20241022", provider: i % 2 ? "openai" : "anthropic",
    status: i === 3 ? 502 : 200, tokens: 1234 * (i + 1), cost: 0.0031 * (i + 1), ms: 420 + i * 333, at: now - i * 61,
  }));
  const err = h("div", { class: "error", role: "alert", hidden: true });
  const tryIt = h("button", { type: "button", class: "primary", id: "fail" }, "Save");
  tryIt.addEventListener("click", async () => {
    try { await busy(tryIt, api("POST", "/api/fail", { name: "" })); } catch (e) { showError(err, e); }
  });
  const del = h("button", { type: "button", class: "danger", id: "delete" }, "Delete");
  del.addEventListener("click", async () => { document.body.dataset.confirmed = String(await confirmDialog("Delete the key “ci”? Tools using it stop working.", { confirm: "Delete" })); });
  return [
    h("div", { class: "page-head" }, h("h1", null, "Components"),
      h("div", { class: "actions" }, h("div", { class: "segmented", role: "group", "aria-label": "Range" },
        ["1h", "24h", "7d", "30d"].map(r => h("button", { type: "button", "aria-pressed": String(r === "24h") }, r))))),
    h("div", { class: "stats" },
      [["Requests", formatNumber(128734)], ["Tokens", formatNumber(98234112, { compact: true })], ["Cost", formatCost(41.2)], ["p95", formatDuration(1840)]]
        .map(([l, v]) => h("div", { class: "stat" }, h("div", { class: "stat-label" }, l), h("div", { class: "stat-value" }, v)))),
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", null, "Requests per hour")), chartBox),
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", null, "Recent requests"), badge("live", "info")),
      table([
        { label: "Request", key: "id", class: "mono" },
        { label: "Model", key: "model" },
        { label: "Provider", key: "provider" },
        { label: "Status", value: r => badge(String(r.status), r.status < 400 ? "ok" : "error") },
        { label: "Tokens", num: true, value: r => formatNumber(r.tokens) },
        { label: "Cost", num: true, value: r => formatCost(r.cost) },
        { label: "Latency", num: true, value: r => formatDuration(r.ms) },
        { label: "Time", value: r => formatTime(r.at), class: "nowrap" },
        { label: "", class: "actions", value: () => h("button", { type: "button", class: "small ghost" }, "Details") },
      ], rows, { caption: "Recent requests" })),
    h("section", { class: "card" }, h("h2", null, "Providers (stacked on a phone)"),
      table([
        { label: "Name", key: "provider" },
        { label: "Model", key: "model" },
        { label: "Status", value: r => badge(String(r.status), r.status < 400 ? "ok" : "error") },
        { label: "", class: "actions", value: () => [h("button", { type: "button", class: "small" }, "Test"), h("button", { type: "button", class: "small danger" }, "Delete")] },
      ], rows.slice(0, 2), { caption: "Providers", stack: true })),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Devices"),
        h("dl", { class: "kv" },
          h("dt", null, "laptop"), h("dd", null, badge("online", "online"), " 100.64.0.2 · fd00::2"),
          h("dt", null, "robot-7"), h("dd", null, badge("offline", "offline"), " last seen " + formatAgo(Date.now() - 7200e3)),
          h("dt", null, "Traffic"), h("dd", null, formatBytes(1536000)),
          h("dt", null, "Breaker"), h("dd", null, badge("open", "error"), " ", badge("cooldown", "warn")))),
      h("section", { class: "card" }, h("h2", null, "New API key"),
        secretBox("sk-omni-3f9a2b7c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70"),
        h("div", { class: "notice warn" }, "Budget at 85% of the daily limit."))),
    h("section", { class: "card" }, h("h2", null, "Actions"),
      h("div", { class: "form-actions" }, tryIt, h("button", { type: "button" }, "Test connection"), del,
        h("button", { type: "button", class: "small" }, "Small"), h("button", { type: "button", disabled: true }, "Disabled")),
      err),
  ];
}

function emptyStates() {
  return [
    h("div", { class: "page-head" }, h("h1", null, "Empty states")),
    h("section", { class: "card" }, h("h2", null, "Keys"),
      table([{ label: "Name", key: "name" }], [], { empty: empty("No keys yet", "Create a key to let a tool call the gateway.", h("button", { type: "button", class: "primary" }, "Create key")) })),
    h("section", { class: "card" }, h("h2", null, "Logs"), table([{ label: "Request", key: "id" }], [], { empty: "No requests in this range. Send one from the Playground." })),
  ];
}

function form() {
  const name = h("input", { name: "name", required: true, placeholder: "my-laptop", autocomplete: "off" });
  const kind = h("select", { name: "kind" }, h("option", { value: "openai" }, "OpenAI compatible"), h("option", { value: "anthropic" }, "Anthropic"));
  const f = h("form", { class: "card", novalidate: true },
    h("h2", null, "Add provider"),
    h("div", { class: "form-row" }, field("Name", name, "Shown in logs and charts."), field("Type", kind)),
    field("Base URL", h("input", { name: "url", type: "url", value: "https://api.example.com/v1" })),
    field("API key", h("input", { name: "key", type: "password", autocomplete: "new-password" })),
    h("fieldset", null, h("legend", null, "Options"),
      h("label", { class: "check" }, h("input", { type: "checkbox", checked: true }), "Enabled"),
      " ", h("label", { class: "check" }, h("input", { type: "checkbox" }), "Require login")),
    field("Notes", h("textarea", { name: "notes" })),
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Add provider"), h("button", { type: "reset" }, "Cancel")));
  f.addEventListener("submit", e => { e.preventDefault(); showError(f, new Error("name: must not be empty")); toast("Saved", "ok"); });
  return [h("div", { class: "page-head" }, h("h1", null, "Form")), f];
}

route([
  { path: "/", title: "Components", render: components },
  { path: "/empty", title: "Empty states", render: emptyStates },
  { path: "/form", title: "Form", render: form },
], { mount: main, title: "Omni Look", onRoute: p => { setActive(p); document.body.dataset.route = p; } });
document.body.dataset.ready = "1";
