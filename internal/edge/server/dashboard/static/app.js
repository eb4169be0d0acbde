// OmniEdge dashboard: a client of the public JSON API (docs/edge-api.md),
// authenticated by the HttpOnly session cookie that
// POST /api/v2/auth/dashboard/login sets. Built on the shared look
// (/ui/ui.js, /ui/base.css).
import {
  api, ApiError, h, clear, field, badge, empty, table as uiTable, showError, busy, secretBox, confirmDialog,
  layout, route, navigate, formatTime, formatAgo, poll,
} from "/ui/ui.js";

const LIVE_MS = 3000; // how often live pages re-read the API
const CANDIDATES_MS = 30000; // how often the network page re-reads the devices that could join

// The session cookie is HttpOnly; a companion cookie without the secret
// says one may exist, so a logged-out visitor gets the form at once.
const loggedIn = () => document.cookie.split(";").some(c => c.trim().startsWith("omni_edge_session_present="));

// ended sends the user back to the login form when the session has ended
// (logged out elsewhere, revoked, expired).
async function ended() {
  await fetch("/api/v2/auth/dashboard/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}", credentials: "same-origin" }).catch(() => {});
  location.assign("/?ended=1");
}

// call is api() that sends the user back to the login form on a 401.
async function call(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (e) {
    if (e && e.status === 401) await ended();
    throw e;
  }
}

// Live lists are read with conditional GETs: the last answer and its
// ETag are kept per path, and a list that has not changed comes back as a
// 304 without a body (docs/edge-api.md, "Conditional list reads"), so a
// page polling a network of thousands of devices moves a few hundred
// bytes every LIVE_MS instead of the whole list. A path's entry is
// replaced by each new answer, so there is one per list read.
const lastAnswers = new Map(); // path → { tag, data }

// fresh(path) GETs a list and returns { data, changed }: changed is false
// when the server answered 304 (data is then the kept answer).
async function fresh(path) {
  const prev = lastAnswers.get(path);
  const headers = { Accept: "application/json" };
  if (prev) headers["If-None-Match"] = prev.tag;
  let res;
  try {
    // no-store: the answer is kept here, not in the browser's cache.
    res = await fetch(path, { headers, credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    throw new ApiError("Cannot reach the server: " + (e && e.message ? e.message : e), 0, "network", null);
  }
  if (res.status === 304 && prev) return { data: prev.data, changed: false };
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    if (res.status === 401) await ended();
    const e = data && typeof data.error === "object" && data.error ? data.error : {};
    throw new ApiError(e.message || `${res.status} ${res.statusText || "error"}`, res.status, e.code || "", data);
  }
  const tag = res.headers.get("ETag");
  if (tag) lastAnswers.set(path, { tag, data }); else lastAnswers.delete(path);
  return { data, changed: true };
}

const enc = encodeURIComponent;

// table is ui.js's table that turns into labelled cards on a phone.
const table = (columns, rows, opts) => uiTable(columns, rows, { ...opts, stack: true });
const errBox = () => h("div", { class: "error", role: "alert", hidden: true });
// act runs f for a control, showing a failure in box next to it.
async function act(box, f) {
  showError(box, null);
  try { await f(); } catch (e) { if (e && e.status !== 401) showError(box, e); }
}
const online = on => badge(on ? "online" : "offline", on ? "online" : "offline");
const head = (title, ...actions) => h("div", { class: "page-head" }, h("h1", null, title), actions.length ? h("div", { class: "actions" }, actions) : null);

// ---- login ----

function loginScreen() {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true, id: "email" });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, id: "password" });
  const submit = h("button", { type: "submit", class: "primary", id: "login" }, "Log in");
  const err = errBox();
  const params = new URLSearchParams(location.search);
  const note = params.has("ended") ? h("div", { class: "notice" }, "Your session has ended. Log in again.")
    : params.has("out") ? h("div", { class: "notice ok" }, "You are logged out.") : null;
  const form = h("form", null, field("Email", email), field("Password", password), h("div", { class: "form-actions" }, submit), err);
  form.addEventListener("submit", async e => {
    e.preventDefault();
    showError(err, null);
    try {
      await busy(submit, api("POST", "/api/v2/auth/dashboard/login", { email: email.value, password: password.value }));
      location.assign(location.pathname === "/" ? "/networks" : location.pathname);
    } catch (e) {
      showError(err, e); // a wrong password is a 401 here, shown like any other error
    }
  });
  document.body.append(h("main", { class: "center", id: "main" },
    h("section", { class: "card narrow login-card" },
      h("h1", null, "Log in to OmniEdge"),
      h("p", { class: "muted" }, "Use the email and password of your account (an administrator creates it with omni edge admin user create)."),
      note, form)));
  document.title = "Log in · OmniEdge";
  email.focus();
}

// ---- networks ----

async function networksPage(ctx) {
  const name = h("input", { name: "name", required: true, placeholder: "home", id: "net-name" });
  const range = h("input", { name: "ip_range", placeholder: "100.77.0.0/24", id: "net-range" });
  const submit = h("button", { type: "submit", class: "primary", id: "create-network" }, "Create network");
  const err = errBox();
  const form = h("form", { class: "inline-form" },
    field("Name", name), field("IPv4 range (optional)", range, "Inside 100.64.0.0/10; a free /24 when empty."), submit);
  form.addEventListener("submit", e => {
    e.preventDefault();
    act(err, async () => {
      const body = { name: name.value.trim() };
      if (range.value.trim()) body.ip_range = range.value.trim();
      const n = await busy(submit, call("POST", "/api/v2/virtual-networks", body));
      navigate("/networks/" + enc(n.id));
    });
  });
  const list = h("div");
  let drawn = false;
  async function render() {
    const { data: nets, changed } = await fresh("/api/v2/virtual-networks");
    if (drawn && !changed) return;
    drawn = true;
    clear(list, table([
      { label: "Name", value: n => h("a", { href: "/networks/" + enc(n.id) }, n.name) },
      { label: "IPv4 range", value: n => h("code", null, n.ip_range) },
      { label: "IPv6 prefix", value: n => h("code", null, n.ipv6_range) },
      { label: "Nucleus", value: n => n.server.name || n.server.host },
    ], nets, { caption: "Networks", empty: empty("No networks yet", "Create one above, then join devices to it with omni edge join.") }));
  }
  await render();
  poll(render, LIVE_MS, ctx.signal);
  return [
    head("Networks"),
    h("section", { class: "card" }, h("h2", null, "New network"), form, err),
    h("section", { class: "card" }, list),
  ];
}

async function networkPage(ctx) {
  const id = ctx.params.id;
  const path = "/api/v2/virtual-networks/" + enc(id);
  const [net, servers] = await Promise.all([call("GET", path), call("GET", "/api/v2/user-servers")]);

  const netErr = errBox();
  const serverSel = h("select", { id: "net-server" },
    h("option", { value: "" }, "Built-in nucleus"),
    servers.map(s => h("option", { value: s.id, selected: s.id === (net.server.id || "") }, `${s.name} (${s.host})`)));
  const assign = h("button", { type: "submit", id: "assign-server" }, "Assign nucleus");
  const assignForm = h("form", { class: "inline-form" }, field("Nucleus", serverSel), assign);
  assignForm.addEventListener("submit", e => {
    e.preventDefault();
    act(netErr, async () => { await busy(assign, call("PATCH", path, { server_id: serverSel.value || null })); navigate("/networks/" + enc(id), { replace: true }); });
  });
  const del = h("button", { type: "button", class: "danger", id: "delete-network" }, "Delete network");
  del.addEventListener("click", () => act(netErr, async () => {
    if (!await confirmDialog(`Delete network “${net.name}”? Its members are removed and its addresses freed.`, { confirm: "Delete" })) return;
    await call("DELETE", path);
    navigate("/networks");
  }));

  const members = h("div");
  const memberErr = errBox();
  const devSel = h("select", { id: "join-device" });
  const add = h("button", { type: "submit", id: "join-network" }, "Add to network");
  const joinErr = errBox();
  const joinForm = h("form", { class: "inline-form" }, field("Device", devSel), add);
  joinForm.addEventListener("submit", e => {
    e.preventDefault();
    act(joinErr, async () => { await busy(add, call("POST", path + "/devices/" + enc(devSel.value), {})); await render(true); await fillDevices(); });
  });

  // A member's exit-node choice that the API refused stays shown next to
  // its select until the next choice for that member.
  const exitErrs = new Map(); // device id → error
  let drawn = false, stale = false;
  // The list is not redrawn under a select in use (that would close it):
  // the redraw waits until the focus leaves it.
  const busyInList = () => members.contains(document.activeElement) && document.activeElement.tagName === "SELECT";
  members.addEventListener("focusout", () => { if (stale) setTimeout(() => { if (stale && !busyInList()) render(); }, 0); });

  // The member list is what the page polls. The devices that could join
  // (the select below it) are read once the members are shown, when the
  // select is about to be used, after a change and every CANDIDATES_MS: a
  // user with thousands of devices does not wait for a second list, nor
  // read it every LIVE_MS.
  let lastMembers = [];
  async function render(force) {
    const m = await fresh(path + "/devices");
    if (drawn && !m.changed && !stale && !force) return; // unchanged: keep the page as it is
    lastMembers = m.data;
    if (!force && busyInList()) { stale = true; return; }
    drawn = true;
    stale = false;
    draw(m.data);
    drawSelect();
  }
  let devices = null, devicesShown = ""; // the last devices list, and what the select shows of it
  async function fillDevices() {
    devices = (await fresh("/api/v2/devices")).data;
    drawSelect();
  }
  function drawSelect() {
    if (!devices) return;
    const inNet = new Set(lastMembers.map(m => m.device_id));
    const others = devices.filter(x => !inNet.has(x.id));
    const sig = JSON.stringify(others.map(x => [x.id, x.name]));
    if (sig === devicesShown) return; // keep the select (and a choice in it) as it is
    devicesShown = sig;
    const keep = devSel.value;
    clear(devSel, others.length ? others.map(x => h("option", { value: x.id, selected: x.id === keep }, x.name))
      : h("option", { value: "" }, "All your devices are members"));
    devSel.disabled = add.disabled = !others.length;
  }
  const refill = () => fillDevices().catch(e => showError(joinErr, e));
  devSel.addEventListener("focus", refill);
  devSel.addEventListener("pointerdown", refill);

  function draw(ms) {
    const focused = members.contains(document.activeElement) ? document.activeElement.id : "";
    const byID = Object.fromEntries(ms.map(m => [m.device_id, m]));
    clear(members, table([
      { label: "Device", value: m => [h("strong", null, m.name), h("span", { class: "consent" }, m.platform)] },
      { label: "Status", class: "nowrap", value: m => [online(m.online), " ", h("span", { class: "muted small" }, m.last_seen ? formatAgo(m.last_seen) : "never seen")] },
      { label: "Name and addresses", value: m => [h("code", { class: "addr", "data-dns": m.device_id }, m.dns_name || ""), h("code", { class: "addr" }, m.virtual_ip), h("code", { class: "addr" }, m.virtual_ip_v6)] },
      { label: "Subnet routes", value: m => routeChoice(m) },
      {
        label: "Exit node", value: m => {
          const box = h("input", { type: "checkbox", checked: m.is_exit_node, "data-exit": m.device_id, id: "exit-" + m.device_id });
          box.addEventListener("change", () => act(memberErr, async () => {
            await call("PATCH", path + "/devices/" + enc(m.device_id), { is_exit_node: box.checked });
            await render(true);
          }));
          return [h("label", { class: "check", for: box.id }, box, "Allowed by admin"),
            h("span", { class: "consent" }, m.exit_node_consent ? "device consents" : "device has not consented")];
        },
      },
      { label: "Uses exit node", value: m => exitChoice(m, ms, byID) },
      {
        label: "", class: "actions", value: m => {
          const b = h("button", { type: "button", class: "small danger", "data-remove": m.device_id }, "Remove");
          b.addEventListener("click", () => act(memberErr, async () => {
            if (!await confirmDialog(`Remove “${m.name}” from ${net.name}? The network's secret rotates.`, { confirm: "Remove" })) return;
            await call("DELETE", path + "/devices/" + enc(m.device_id));
            await render(true);
            await fillDevices();
          }));
          return b;
        },
      },
    ], ms, { caption: "Members", empty: empty("No devices in this network yet", "Run omni edge join on a device, or add one of your devices below.") }), memberErr);
    const again = focused && document.getElementById(focused);
    if (again) again.focus();
  }

  // routeChoice lists the subnet routes member m advertises, each with a
  // checkbox of the owner's approval, and the routes approved before the
  // device advertised them (docs/edge-routes.md). A change sends the whole
  // approved list.
  function routeChoice(m) {
    const rs = m.routes;
    if (!rs) return h("span", { class: "muted small" }, "none advertised");
    const approved = new Set(rs.approved), primary = new Set(rs.primary);
    const all = [...new Set([...rs.advertised, ...rs.approved])];
    return all.map(r => {
      const id = "route-" + m.device_id + "-" + r.replace(/[^0-9a-f]/gi, "_");
      const box = h("input", { type: "checkbox", id, checked: approved.has(r), "data-route": r, "data-route-of": m.device_id });
      box.addEventListener("change", () => act(memberErr, async () => {
        const next = box.checked ? [...approved, r] : [...approved].filter(x => x !== r);
        await call("PUT", path + "/devices/" + enc(m.device_id) + "/routes", { approved: next });
        await render(true);
      }));
      const state = !rs.advertised.includes(r) ? "approved, not advertised" : !approved.has(r) ? "awaiting approval"
        : primary.has(r) ? "in use" : "standby (another member carries it)";
      return h("div", null, h("label", { class: "check", for: id }, box, h("code", { class: "addr" }, r)), h("span", { class: "consent" }, state));
    });
  }

  // exitChoice is the select of the exit node member m routes its internet
  // traffic through: none, or another member the admin allows as exit node
  // (the current choice is kept in the list even if no longer allowed). The
  // network's owner owns every member (a device joins only its owner's
  // networks), so the owner may set it for each; the API checks again.
  function exitChoice(m, ms, byID) {
    const options = ms.filter(o => o.device_id !== m.device_id && (o.is_exit_node || o.device_id === m.exit_node));
    const sel = h("select", { id: "uses-exit-" + m.device_id, "data-uses-exit": m.device_id, "aria-label": `Exit node ${m.name} uses` },
      h("option", { value: "", selected: !m.exit_node }, "none"),
      options.map(o => h("option", { value: o.device_id, selected: o.device_id === m.exit_node }, o.is_exit_node ? o.name : `${o.name} (not allowed)`)));
    const err = errBox();
    err.id = "uses-exit-error-" + m.device_id;
    sel.setAttribute("aria-describedby", err.id);
    if (exitErrs.has(m.device_id)) showError(err, exitErrs.get(m.device_id));
    sel.addEventListener("change", async () => {
      showError(err, null);
      exitErrs.delete(m.device_id);
      sel.disabled = true;
      try {
        await call("PATCH", path + "/devices/" + enc(m.device_id), { exit_node: sel.value || null });
      } catch (e) {
        if (e && e.status === 401) return;
        exitErrs.set(m.device_id, e);
        showError(err, e);
        sel.value = m.exit_node || "";
      } finally {
        sel.disabled = false;
      }
      await render(true).catch(e => showError(memberErr, e));
    });
    return [sel, exitState(m, byID), err];
  }

  // exitState says whether m's chosen exit node is in use: the heartbeat
  // routes through it only while the admin allows it, the device itself
  // consents and it is online (docs/edge-api.md, heartbeat).
  function exitState(m, byID) {
    if (!m.exit_node) return null;
    const x = byID[m.exit_node];
    const why = !x ? "it is not a member" : !x.is_exit_node ? "it is not allowed by admin" : !x.exit_node_consent ? "it has not consented"
      : !x.online ? "it is offline" : "";
    return h("span", { class: "consent", "data-exit-state": m.device_id }, why ? "not in effect: " + why : "in effect");
  }

  // Key lifetime of the network's device keys (docs/edge-key-expiry.md):
  // "0" never expires.
  const lifeIn = h("input", { id: "key-expiry", value: net.key_expiry || "0", size: 8, "aria-describedby": "key-expiry-help" });
  const lifeSave = h("button", { type: "submit", id: "key-expiry-save" }, "Set key lifetime");
  const lifeForm = h("form", { class: "inline-form" },
    field("Device key lifetime", lifeIn, "A duration such as 720h (1 hour to 10 years), or 0: keys never expire."), lifeSave);
  lifeForm.addEventListener("submit", e => {
    e.preventDefault();
    act(netErr, async () => { await busy(lifeSave, call("PATCH", path, { key_expiry: lifeIn.value.trim() })); navigate("/networks/" + enc(id), { replace: true }); });
  });

  const policyCard = await policyEditor(path);

  clear(devSel, h("option", { value: "" }, "Loading your devices…"));
  devSel.disabled = add.disabled = true;
  await render();
  poll(render, LIVE_MS, ctx.signal);
  poll(fillDevices, CANDIDATES_MS, ctx.signal, e => showError(joinErr, e));

  return [
    head("Network " + net.name, del),
    h("section", { class: "card" },
      h("dl", { class: "kv" },
        h("dt", null, "ID"), h("dd", null, h("code", null, net.id)),
        h("dt", null, "IPv4 range"), h("dd", null, h("code", null, net.ip_range)),
        h("dt", null, "IPv6 prefix"), h("dd", null, h("code", null, net.ipv6_range)),
        h("dt", null, "DNS zone"), h("dd", null, h("code", null, net.dns_name || "")),
        h("dt", null, "Nucleus"), h("dd", null, net.server.name, " ", h("code", null, net.server.host))),
      assignForm, lifeForm, netErr),
    h("section", { class: "card" }, h("h2", null, "Members"), members),
    h("section", { class: "card" }, h("h2", null, "Add a device"), joinForm, joinErr),
    policyCard,
  ];
}

// putDocument PUTs text as it is (a policy keeps its lines, so the
// server's "line 4, column 51" points into the editor) with extra headers.
async function putDocument(path, text, headers) {
  let res;
  try {
    res = await fetch(path, { method: "PUT", credentials: "same-origin", body: text,
      headers: { Accept: "application/json", "Content-Type": "application/json", ...headers } });
  } catch (e) {
    throw new ApiError("Cannot reach the server: " + (e && e.message ? e.message : e), 0, "network", null);
  }
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) {
    if (res.status === 401) await ended();
    const e = data && typeof data.error === "object" && data.error ? data.error : {};
    throw new ApiError(e.message || `${res.status} ${res.statusText || "error"}`, res.status, e.code || "", data);
  }
  return data;
}

// formatPolicy lays a policy out one group and one rule a line, as the
// docs write them (JSON.stringify's indentation would give every address
// a line of its own).
function formatPolicy(pol) {
  if (!pol || typeof pol !== "object" || Array.isArray(pol)) return JSON.stringify(pol);
  const one = v => JSON.stringify(v);
  const keys = Object.keys(pol).map(k => {
    const v = pol[k];
    let body;
    if (Array.isArray(v)) body = v.length ? "[\n    " + v.map(one).join(",\n    ") + "\n  ]" : "[]";
    else if (v && typeof v === "object") {
      const ks = Object.keys(v);
      body = ks.length ? "{\n    " + ks.map(g => JSON.stringify(g) + ": " + one(v[g])).join(",\n    ") + "\n  }" : "{}";
    } else body = one(v);
    return "  " + JSON.stringify(k) + ": " + body;
  });
  return "{\n" + keys.join(",\n") + "\n}";
}

const policyExample = `{
  "groups": {"group:ops": ["laptop"]},
  "rules": [
    {"action": "accept", "src": ["group:ops"], "dst": ["tag:server:22"], "proto": "tcp"}
  ]
}`;

// policyEditor is the network's access policy (docs/edge-policy.md): the
// document as stored, saved with If-Match on the version it was read at
// (someone else's save in between is a 412, shown, not overwritten), and
// a dry run of the document in the editor.
async function policyEditor(path) {
  let cur = await call("GET", path + "/policy");
  const doc = h("textarea", { id: "policy-doc", rows: 12, spellcheck: false, class: "policy-doc", "aria-label": "Access policy (JSON)",
    placeholder: policyExample });
  doc.value = cur.policy == null ? "" : formatPolicy(cur.policy);
  const state = h("p", { class: "muted small", id: "policy-state" });
  const showState = () => state.textContent = cur.version === 0 || cur.policy == null
    ? "No policy: every member reaches every other member on every port."
    : `Version ${cur.version}, saved ${formatTime(cur.updated_at)}.`;
  showState();
  const save = h("button", { type: "submit", class: "primary", id: "policy-save" }, "Save policy");
  const err = errBox();
  const form = h("form", null, doc, h("div", { class: "form-actions" }, save), err);
  form.addEventListener("submit", e => {
    e.preventDefault();
    act(err, async () => {
      const text = doc.value.trim() || "null";
      await busy(save, putDocument(path + "/policy", text, { "If-Match": `"${cur.version}"` }));
      cur = await call("GET", path + "/policy");
      showState();
    });
  });

  const src = h("input", { id: "check-src", placeholder: "laptop", size: 14 });
  const dst = h("input", { id: "check-dst", placeholder: "robot", size: 14 });
  const proto = h("select", { id: "check-proto" }, ["tcp", "udp", "icmp"].map(p => h("option", { value: p }, p)));
  const port = h("input", { id: "check-port", type: "number", min: 0, max: 65535, value: 22, size: 6 });
  const run = h("button", { type: "submit", id: "check-run" }, "Check");
  const verdict = h("span", { id: "check-verdict", role: "status" });
  const checkErr = errBox();
  const check = h("form", { class: "inline-form" }, field("From", src), field("To", dst), field("Protocol", proto), field("Port", port), run, verdict);
  check.addEventListener("submit", e => {
    e.preventDefault();
    verdict.textContent = "";
    act(checkErr, async () => {
      const body = { src: src.value.trim(), dst: dst.value.trim(), proto: proto.value, port: Number(port.value) || 0 };
      const text = doc.value.trim();
      if (text) {
        try { body.policy = JSON.parse(text); } catch (e) { throw new ApiError("The policy in the editor is not JSON: " + e.message, 400, "invalid_request", null); }
      }
      const r = await busy(run, call("POST", path + "/policy/check", body));
      verdict.textContent = `${r.allowed ? "allowed" : "dropped"} (${r.src} → ${r.dst})`;
      verdict.className = "badge " + (r.allowed ? "online" : "offline");
    });
  });
  return h("section", { class: "card policy-card" },
    h("h2", null, "Access policy"),
    h("p", { class: "muted small" }, "Who may reach whom: members by DNS label or device id, group:, tag: (set on the Devices page), addresses and prefixes. Every device enforces it on what it receives."),
    state, form,
    h("h3", null, "Dry run"), check, checkErr);
}

// ---- devices ----

async function devicesPage(ctx) {
  const list = h("div");
  const err = errBox();
  let drawn = false;
  async function render() {
    // One call: each device comes with its networks (virtual_networks).
    const { data: devs, changed } = await fresh("/api/v2/devices");
    if (drawn && !changed) return; // unchanged: keep the page as it is
    drawn = true;
    clear(list, table([
      { label: "Name", value: d => h("strong", null, d.name) },
      { label: "Status", class: "nowrap", value: d => [online(d.online), " ", h("span", { class: "muted small" }, d.last_seen ? formatAgo(d.last_seen) : "never seen")] },
      { label: "OS", value: d => d.platform || h("span", { class: "muted" }, "unknown") },
      { label: "Tags", value: d => (d.tags || []).length ? d.tags.map(t => h("code", { class: "addr", "data-tag-of": d.id }, t)) : h("span", { class: "muted small" }, "none") },
      {
        label: "Networks and addresses", value: d => (d.virtual_networks || []).length
          ? d.virtual_networks.map(m => h("div", null, h("a", { href: "/networks/" + enc(m.network_id) }, m.network_name || m.network_id),
            h("code", { class: "addr" }, m.virtual_ip), h("code", { class: "addr" }, m.virtual_ip_v6)))
          : h("span", { class: "muted" }, "in no network"),
      },
      {
        label: "", class: "actions", value: d => {
          const rename = h("button", { type: "button", class: "small", "data-rename": d.id }, "Edit");
          rename.addEventListener("click", () => renameForm(d));
          const expire = h("button", { type: "button", class: "small danger", "data-expire": d.id, disabled: !d.public_key || !!d.key_expired_at }, d.key_expired_at ? "Key expired" : "Expire key");
          expire.addEventListener("click", () => act(err, async () => {
            if (!await confirmDialog(`Expire the key of “${d.name}” now? Its peers drop it at once; it needs a new login to come back.`, { confirm: "Expire key" })) return;
            await call("POST", "/api/v2/devices/" + enc(d.id) + "/expire", {});
            await render();
          }));
          const del = h("button", { type: "button", class: "small danger", "data-delete-device": d.id }, "Delete");
          del.addEventListener("click", () => act(err, async () => {
            if (!await confirmDialog(`Delete device “${d.name}”? It leaves every network and its sessions end.`, { confirm: "Delete" })) return;
            await call("DELETE", "/api/v2/devices/" + enc(d.id));
            await render();
          }));
          return [rename, expire, del];
        },
      },
    ], devs, { caption: "Devices", empty: empty("No devices yet", "Install OmniEdge on a device and run omni edge login, or log it in with a key from the Security keys page.") }));
  }
  const editor = h("div");
  function renameForm(d) {
    const name = h("input", { value: d.name, required: true, id: "rename-name" });
    const tags = h("input", { value: (d.tags || []).join(", "), id: "edit-tags", placeholder: "tag:server, tag:eu" });
    const save = h("button", { type: "submit", class: "primary", id: "rename-save" }, "Save");
    const cancel = h("button", { type: "button" }, "Cancel");
    const ferr = errBox();
    const form = h("form", { class: "inline-form" }, field(`Name of ${d.name}`, name),
      field("Tags", tags, "Comma-separated; access policies name them (tag:server)."), save, cancel);
    cancel.addEventListener("click", () => clear(editor));
    form.addEventListener("submit", e => {
      e.preventDefault();
      const list = tags.value.split(",").map(t => t.trim()).filter(Boolean);
      act(ferr, async () => { await busy(save, call("PATCH", "/api/v2/devices/" + enc(d.id), { name: name.value.trim(), tags: list })); clear(editor); await render(); });
    });
    clear(editor, h("section", { class: "card" }, form, ferr));
    name.focus();
  }
  await render();
  poll(render, LIVE_MS, ctx.signal);
  return [head("Devices"), editor, h("section", { class: "card" }, list, err)];
}

// ---- security keys and sessions ----

async function keysPage(ctx) {
  const name = h("input", { required: true, placeholder: "laptop", id: "key-name" });
  const submit = h("button", { type: "submit", class: "primary", id: "create-key" }, "Create key");
  const err = errBox();
  const shown = h("div", { id: "new-key-box" });
  const keys = h("div");
  const sessions = h("div");
  const form = h("form", { class: "inline-form" }, field("Name", name), submit);
  form.addEventListener("submit", e => {
    e.preventDefault();
    act(err, async () => {
      const k = await busy(submit, call("POST", "/api/v2/security-keys", { name: name.value.trim() }));
      name.value = "";
      const box = secretBox(k.key, "Copy it now: it is shown only once. Log a device in with omni edge login --security-key KEY.");
      const code = box.querySelector("code");
      if (code) code.id = "new-key";
      clear(shown, box);
      await renderKeys();
    });
  });

  let keysDrawn = false, sessionsDrawn = false;
  async function renderKeys() {
    const { data, changed } = await fresh("/api/v2/security-keys");
    if (keysDrawn && !changed) return;
    keysDrawn = true;
    const list = data.filter(k => !k.revoked_at);
    const kerr = errBox();
    clear(keys, table([
      { label: "Name", key: "name" },
      { label: "Created", value: k => formatTime(k.created_at) },
      { label: "Last used", value: k => k.last_used_at ? formatAgo(k.last_used_at) : "never" },
      { label: "Expires", value: k => k.expires_at ? formatTime(k.expires_at) : "never" },
      {
        label: "", class: "actions", value: k => {
          const b = h("button", { type: "button", class: "small danger", "data-revoke-key": k.id }, "Revoke");
          b.addEventListener("click", () => act(kerr, async () => {
            if (!await confirmDialog(`Revoke the key “${k.name}”? Devices logged in with it are logged out.`, { confirm: "Revoke" })) return;
            await call("DELETE", "/api/v2/security-keys/" + enc(k.id));
            await renderKeys();
            await renderSessions();
          }));
          return b;
        },
      },
    ], list, { caption: "Security keys", empty: empty("No security keys", "Create one above to log in a device without a browser.") }), kerr);
  }
  async function renderSessions() {
    const { data: list, changed } = await fresh("/api/v2/sessions");
    if (sessionsDrawn && !changed) return;
    sessionsDrawn = true;
    const serr = errBox();
    clear(sessions, table([
      { label: "Method", value: s => [s.method, " ", s.current ? badge("this browser", "info") : null] },
      { label: "From", class: "wrap", value: s => [h("code", null, s.client_ip || "?"), h("div", { class: "muted small" }, s.user_agent || "")] },
      { label: "Started", value: s => formatTime(s.created_at) },
      { label: "Last used", value: s => s.last_used_at ? formatAgo(s.last_used_at) : "—" },
      {
        label: "", class: "actions", value: s => {
          const b = h("button", { type: "button", class: "small danger", "data-revoke-session": s.id, "data-current": s.current || null }, "Revoke");
          b.addEventListener("click", () => act(serr, async () => {
            if (!await confirmDialog(s.current ? "Revoke this browser's session? You will be logged out." : "Revoke this session? Its device must log in again.", { confirm: "Revoke" })) return;
            await call("DELETE", "/api/v2/sessions/" + enc(s.id));
            if (s.current) { location.assign("/?out=1"); return; }
            await renderSessions();
          }));
          return b;
        },
      },
    ], list, { caption: "Active sessions", empty: "No active sessions." }), serr);
  }
  const renderAll = () => Promise.all([renderKeys(), renderSessions()]);
  await renderAll();
  poll(renderAll, LIVE_MS, ctx.signal);
  return [
    head("Security keys"),
    h("section", { class: "card" }, h("h2", null, "New security key"),
      h("p", { class: "muted" }, "A security key logs a device in without a browser: omni edge login --security-key KEY."),
      form, err, shown),
    h("section", { class: "card" }, h("h2", null, "Keys"), keys),
    h("section", { class: "card" }, h("h2", null, "Active sessions"), sessions),
  ];
}

// ---- user servers ----

async function serversPage() {
  const f = {
    name: h("input", { required: true, id: "srv-name" }),
    host: h("input", { required: true, placeholder: "nucleus.example.com:7787", id: "srv-host" }),
    country: h("input", { placeholder: "DE", required: true, maxlength: 2, id: "srv-country" }),
    public_key: h("input", { placeholder: "base64", id: "srv-key" }),
  };
  let editing = null;
  const submit = h("button", { type: "submit", class: "primary", id: "save-server" }, "Add server");
  const cancel = h("button", { type: "button", hidden: true }, "Cancel edit");
  const err = errBox();
  const list = h("div");
  const reset = () => { editing = null; submit.textContent = "Add server"; cancel.hidden = true; for (const i of Object.values(f)) i.value = ""; };
  cancel.addEventListener("click", reset);
  const form = h("form", null,
    h("div", { class: "form-row" }, field("Name", f.name), field("Host:port", f.host), field("Country", f.country, "Two-letter code (ISO 3166-1)."), field("Public key (optional)", f.public_key)),
    h("div", { class: "form-actions" }, submit, cancel));
  form.addEventListener("submit", e => {
    e.preventDefault();
    act(err, async () => {
      const body = { name: f.name.value.trim(), host: f.host.value.trim(), country: f.country.value.trim(), public_key: f.public_key.value.trim() };
      await busy(submit, editing ? call("PATCH", "/api/v2/user-servers/" + enc(editing), body) : call("POST", "/api/v2/user-servers", body));
      reset();
      await render();
    });
  });
  async function render() {
    const servers = await call("GET", "/api/v2/user-servers");
    const rerr = errBox();
    clear(list, table([
      { label: "Name", key: "name" },
      { label: "Host", value: s => h("code", null, s.host) },
      { label: "Country", value: s => s.country || "" },
      { label: "Public key", value: s => s.public_key ? h("code", null, s.public_key.slice(0, 12) + "…") : h("span", { class: "muted" }, "not published") },
      {
        label: "", class: "actions", value: s => {
          const edit = h("button", { type: "button", class: "small", "data-edit-server": s.id }, "Edit");
          edit.addEventListener("click", () => {
            editing = s.id; submit.textContent = "Save server"; cancel.hidden = false;
            f.name.value = s.name; f.host.value = s.host; f.country.value = s.country || ""; f.public_key.value = s.public_key || "";
            f.name.focus();
          });
          const del = h("button", { type: "button", class: "small danger" }, "Delete");
          del.addEventListener("click", () => act(rerr, async () => {
            if (!await confirmDialog(`Delete server “${s.name}”? Networks using it go back to the built-in nucleus.`, { confirm: "Delete" })) return;
            await call("DELETE", "/api/v2/user-servers/" + enc(s.id));
            await render();
          }));
          return [edit, del];
        },
      },
    ], servers, { caption: "Servers", empty: empty("No servers of your own", "Networks use the built-in nucleus until you add one here and assign it on the network's page.") }), rerr);
  }
  await render();
  return [
    head("Servers"),
    h("section", { class: "card" }, h("h2", null, "Your own nucleus"),
      h("p", { class: "muted" }, "Run omni edge nucleus on a server of yours, add it here, then assign it to a network on the network's page."),
      form, err),
    h("section", { class: "card" }, list),
  ];
}

// ---- start ----

if (!loggedIn()) {
  loginScreen();
} else {
  const logout = h("button", { type: "button", class: "small", id: "logout" }, "Log out");
  logout.addEventListener("click", async () => {
    try { await api("POST", "/api/v2/auth/dashboard/logout", {}); } catch { /* over either way */ }
    location.assign("/?out=1");
  });
  const { main, setActive } = layout({
    brand: h("a", { class: "brand", href: "/networks" }, h("img", { src: "/ui/favicon.svg", alt: "" }), "OmniEdge"),
    links: [
      { href: "/networks", label: "Networks" },
      { href: "/devices", label: "Devices" },
      { href: "/keys", label: "Security keys" },
      { href: "/servers", label: "Servers" },
    ],
    actions: [logout],
  });
  route([
    { path: "/", title: "Networks", render: networksPage },
    { path: "/networks", title: "Networks", render: networksPage },
    { path: "/networks/:id", title: "Network", render: networkPage },
    { path: "/devices", title: "Devices", render: devicesPage },
    { path: "/keys", title: "Security keys", render: keysPage },
    { path: "/servers", title: "Servers", render: serversPage },
  ], {
    mount: main, title: "OmniEdge",
    onRoute: path => setActive(path === "/" ? "/networks" : path),
    notFound: () => [head("Not found"), empty("No such page", "Pick a page from the menu.")],
  });
}
