// Keys: gateway keys (created with the raw key shown once, their scopes,
// policy, RPM/RPD/TPM/TPD, budgets with their current windows, revoke)
// and the registered keys other systems issue, with their quotas.
import { h, clear, field, empty, secretBox, confirmDialog, formatTime, formatAgo } from "/dashboard/ui/ui.js";
import { call, act, feedback, ok, values, csv, input, card, head, kv, state, enc, table } from "../lib.js";

const LIMITS = ["rpm", "rpd", "tpm", "tpd"];

// SCOPES are what a key may do beyond /v1, as the API names them.
const SCOPES = [
  ["manage", "manage", "Call the management API (/api/…) with Authorization: Bearer, as the dashboard login does"],
  ["issue", "issuer", "Issue registered keys within its own policy (POST /api/v1/registered-keys)"],
  ["mcp", "mcp", "Use the MCP transports"],
];

// scopePicker is a group of checkboxes, one per scope, idPrefix-scope-NAME.
function scopePicker(idPrefix, chosen = []) {
  return h("fieldset", { class: "scopes", id: `${idPrefix}-scopes` }, h("legend", null, "Scopes"),
    SCOPES.map(([name, , what]) => h("label", { class: "check", for: `${idPrefix}-scope-${name}`, title: what },
      h("input", { type: "checkbox", name: "scope", value: name, id: `${idPrefix}-scope-${name}`, checked: chosen.includes(name) }),
      h("span", null, h("code", null, name), " ", h("span", { class: "muted" }, what)))));
}

const chosenScopes = form => [...form.querySelectorAll("input[name=scope]:checked")].map(c => c.value);

function scopeBadges(k) {
  return SCOPES.filter(([name]) => (k.scopes || []).includes(name))
    .map(([name, label, what]) => [" ", h("span", { class: ["badge", name === "manage" ? "warn" : "info"], title: what }, label)]);
}

export default async function keysPage() {
  const list = h("div", { id: "keys-list" });
  const shown = h("div", { id: "new-key" });
  const limitsOut = h("div", { id: "key-limits" });
  const fb = feedback();
  const create = h("button", { type: "submit", class: "primary", id: "key-create" }, "Create key");
  const form = h("form", { id: "key-form" },
    h("div", { class: "form-row" },
      field("Name", input({ name: "name", id: "key-name", required: true, placeholder: "laptop" })),
      field("Allowed models", input({ name: "allowed_models", id: "key-models" }), "Globs, comma separated; blank: all."),
      field("Allowed providers", input({ name: "allowed_providers", id: "key-providers" }), "Comma separated; blank: all.")),
    scopePicker("key"),
    h("div", { class: "form-actions" }, create), fb, shown);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, create, async () => {
      const v = values(form);
      const body = { name: v.name };
      if (v.allowed_models) body.allowed_models = csv(v.allowed_models);
      if (v.allowed_providers) body.allowed_providers = csv(v.allowed_providers);
      const scopes = chosenScopes(form);
      if (scopes.length) body.scopes = scopes;
      const k = await call("POST", "/api/keys", body);
      state.lastKey = k.key;
      const box = secretBox(k.key, "Copy it now: it is shown only once. The Playground can use it until this page is reloaded.");
      box.querySelector("code").id = "key-raw";
      box.querySelector("button").id = "key-copy";
      clear(shown, h("h3", null, `New key ${k.name}`), box);
      form.reset();
      await load();
    });
  });
  async function load() {
    const data = await call("GET", "/api/keys");
    const rows = (data.keys || data || []).filter(k => k.kind !== "registered");
    clear(list, table([
      { label: "Name", value: k => [h("strong", null, k.name), scopeBadges(k)] },
      { label: "Prefix", value: k => h("code", null, k.prefix) },
      { label: "Allowed models", value: k => (k.allowed_models || []).join(", ") || "all" },
      { label: "Limits", value: k => LIMITS.filter(n => k[n]).map(n => `${n.toUpperCase()} ${k[n]}`).join(" · ") || "none" },
      { label: "Created", value: k => h("span", { title: formatTime(k.created_at) }, formatAgo(k.created_at)) },
      { label: "Last used", value: k => formatAgo(k.last_used_at) },
      { label: "", class: "actions", value: k => keyActions(k, load, limitsOut) },
    ], rows, { caption: "Gateway keys", empty: empty("No keys yet", "Create one above and give it to a client: it calls the gateway with Authorization: Bearer <key>.") }));
  }
  await load();
  return [head("Keys"), card("Create a key", form), card("Gateway keys", list), limitsOut, await registeredSection()];
}

function keyActions(k, reload, out) {
  const fb = feedback();
  const limits = h("button", { type: "button", class: "small", id: `limits-${k.id}`, "aria-label": `Policy and limits of ${k.name}` }, "Limits");
  limits.addEventListener("click", () => act(fb, limits, async () => {
    const b = await call("GET", `/api/usage/budget?apiKeyId=${enc(k.id)}`).catch(() => null);
    out.replaceChildren(policyForm(k, reload), budgetForm(k, b));
    out.querySelector("input").focus();
  }));
  const del = h("button", { type: "button", class: "small danger", "aria-label": `Revoke ${k.name}` }, "Revoke");
  del.addEventListener("click", async () => {
    if (!await confirmDialog(`Revoke key ${k.name}? Clients using it are refused from now on.`, { title: "Revoke key", confirm: "Revoke" })) return;
    act(fb, del, async () => { await call("DELETE", `/api/keys/${enc(k.id)}`); await reload(); });
  });
  return [h("div", { class: "actions" }, limits, del), fb];
}

function policyForm(k, reload) {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save policy");
  const pol = h("form", { class: "card", id: "policy-form" }, h("h2", null, `Policy and limits of ${k.name}`),
    h("div", { class: "form-row" },
      field("Allowed models", input({ name: "allowed_models", value: (k.allowed_models || []).join(", ") }), "Globs, comma separated; blank: all."),
      field("Allowed providers", input({ name: "allowed_providers", value: (k.allowed_providers || []).join(", ") }), "Comma separated; blank: all.")),
    h("div", { class: "form-row" }, LIMITS.map(n => field(n.toUpperCase(), input({ name: n, type: "number", min: 0, value: String(k[n] ?? 0) }), "0: unlimited."))),
    scopePicker("policy", k.scopes || []),
    h("div", { class: "form-actions" }, save), fb);
  pol.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => {
      const v = values(pol);
      const body = { allowed_models: csv(v.allowed_models), allowed_providers: csv(v.allowed_providers) };
      for (const n of LIMITS) body[n] = Number(v[n] || 0);
      body.scopes = chosenScopes(pol);
      await call("PATCH", `/api/keys/${enc(k.id)}`, body);
      ok(fb);
      await reload();
    });
  });
  return pol;
}

function budgetForm(k, b) {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save budget");
  const cur = (b && (b.budget || b)) || {};
  const status = h("div", { id: "budget-status" });
  const showStatus = st => clear(status, h("h3", null, "Current windows and warnings"), kv(st));
  const bud = h("form", { class: "card", id: "budget-form" }, h("h2", null, "Budget (USD)"),
    h("div", { class: "form-row" }, [["hourlyLimitUsd", "Hourly"], ["dailyLimitUsd", "Daily"], ["weeklyLimitUsd", "Weekly"], ["monthlyLimitUsd", "Monthly"], ["warningThreshold", "Warn at (0–1)"]]
      .map(([n, l]) => field(l, input({ name: n, type: "number", step: "any", min: 0, value: cur[n] !== undefined ? String(cur[n]) : "" })))),
    h("div", { class: "form-actions" }, save), fb, status);
  if (b) showStatus(b); else clear(status, empty("No budget", "Set an hourly, daily, weekly or monthly limit above."));
  bud.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => {
      const body = { apiKeyId: k.id };
      for (const [n, v] of Object.entries(values(bud))) if (v !== "") body[n] = Number(v);
      showStatus(await call("POST", "/api/usage/budget", body));
      ok(fb);
    });
  });
  return bud;
}

// registeredSection lists the registered keys (issued by other systems
// through /api/v1/registered-keys) and edits their quotas.
async function registeredSection() {
  const list = h("div", { id: "registered-list" });
  const section = h("section", { class: "card", id: "registered-keys" },
    h("h2", null, "Registered keys"),
    h("p", { class: "muted" }, "Keys other systems issue for their accounts with a stored key that holds the issue scope (POST /api/v1/registered-keys). The quotas below bound how many they may hold and issue."),
    list);
  async function load() {
    const data = await call("GET", "/api/v1/registered-keys");
    clear(list, table([
      { label: "Name", value: k => h("strong", null, k.name) },
      { label: "Prefix", value: k => h("code", null, k.keyPrefix) },
      { label: "Provider", value: k => k.provider || "—" },
      { label: "Account", value: k => k.accountId || "—" },
      { label: "Status", value: k => h("span", { class: ["badge", k.status === "active" ? "ok" : k.status === "expired" ? "warn" : "error"] }, k.status) },
      { label: "Budget", value: k => [k.dailyBudget && `$${k.dailyBudget}/day`, k.hourlyBudget && `$${k.hourlyBudget}/h`].filter(Boolean).join(" · ") || "none" },
      { label: "Expires", value: k => formatTime(k.expiresAt) },
      { label: "Last used", value: k => formatAgo(k.lastUsedAt) },
      { label: "", class: "actions", value: k => {
        if (k.status !== "active") return "";
        const fb = feedback();
        const b = h("button", { type: "button", class: "small danger", "aria-label": `Revoke registered key ${k.name}` }, "Revoke");
        b.addEventListener("click", async () => {
          if (!await confirmDialog(`Revoke registered key ${k.name}?`, { title: "Revoke key", confirm: "Revoke" })) return;
          act(fb, b, async () => { await call("DELETE", `/api/v1/registered-keys/${enc(k.id)}`); await load(); });
        });
        return [b, fb];
      } },
    ], data.keys || [], { caption: "Registered keys", empty: empty("No registered keys", "A system with a key holding the issue scope creates them through POST /api/v1/registered-keys.") }));
  }
  try { await load(); } catch (e) { clear(list, h("div", { class: "error", role: "alert" }, e.message)); }
  const quotas = await call("GET", "/api/settings/registered-keys").catch(() => null);
  if (quotas) section.append(quotaForm(quotas), quotaCheck());
  return section;
}

const QUOTAS = [
  ["maxKeysPerAccount", "Keys per account", "Live keys one issuer may hold for one provider account; 0: no limit."],
  ["maxKeysPerIssuer", "Keys per issuer", "Live keys one issuing key may hold; 0: no limit."],
  ["issuesPerMinute", "Issues per minute", "How fast one issuer may issue; 0: no limit."],
];

function quotaForm(q) {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save quotas");
  const f = h("form", { id: "registered-quotas" }, h("h3", null, "Quotas"),
    h("div", { class: "form-row" }, QUOTAS.map(([n, l, hint]) => field(l, input({ name: n, type: "number", min: 0, value: String(q[n] ?? 0) }), hint))),
    h("div", { class: "form-actions" }, save), fb);
  f.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => {
      const body = {};
      for (const [n, v] of Object.entries(values(f))) body[n] = Number(v);
      await call("PUT", "/api/settings/registered-keys", body);
    }, "Saved.");
  });
  return f;
}

// quotaCheck asks whether a key may be issued now for a provider account.
function quotaCheck() {
  const fb = feedback();
  const out = h("div", { id: "quota-result", role: "status" });
  const check = h("button", { type: "submit" }, "Check");
  const f = h("form", { id: "quota-check" }, h("h3", null, "Check an account's quota"),
    h("p", { class: "muted" }, "Counts the live keys this login issued for the account, as /v1/quotas/check answers an issuer."),
    h("div", { class: "inline-form" },
      field("Provider", input({ name: "provider", placeholder: "openai" })),
      field("Account", input({ name: "accountId", placeholder: "acct-123" })), check), fb, out);
  f.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, check, async () => {
      const q = new URLSearchParams(values(f));
      const r = await call("GET", `/v1/quotas/check?${q}`);
      clear(out, h("p", null, h("span", { class: ["badge", r.allowed ? "ok" : "error"] }, r.allowed ? "may issue" : "at quota"),
        ` ${r.activeKeys} live key${r.activeKeys === 1 ? "" : "s"} of ${r.maxKeys || "unlimited"}`, r.reason ? ` · ${r.reason}` : ""));
    });
  });
  return f;
}
