// Settings: require-login, the password, usage retention, resilience
// settings, backups (create, download, restore, delete, import).
import { h, clear, field, empty, confirmDialog, formatTime, formatBytes } from "/dashboard/ui/ui.js";
import { call, act, feedback, ok, values, input, card, head, BASE, enc, table } from "../lib.js";

export default async function settingsPage() {
  const [rl, ret, res] = await Promise.all([
    call("GET", "/api/settings/require-login"),
    call("GET", "/api/settings/usage-retention").catch(() => null),
    call("GET", "/api/resilience"),
  ]);
  return [head("Settings"), loginCard(rl), passwordCard(), retentionCard(ret), resilienceCard(res.settings || {}), await backupsCard()];
}

function loginCard(rl) {
  const fb = feedback();
  const req = h("input", { type: "checkbox", id: "require-login", checked: rl.requireLogin });
  req.addEventListener("change", () => act(fb, null, async () => {
    await call("PUT", "/api/settings/require-login", { requireLogin: req.checked });
    document.getElementById("logout").hidden = !req.checked;
  }, req.checked ? "Saved: the dashboard and the management API need the password." : "Saved: anyone who can reach this address manages the gateway without a password."));
  return card("Login",
    h("label", { class: "check", for: "require-login" }, req, "Require login for the dashboard and management API"),
    h("p", { class: "hint" }, "Off only on a machine nobody else can reach: the management API answers on allowed hosts only (localhost by default)."), fb);
}

function passwordCard() {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Change password");
  const form = h("form", { id: "password-form" },
    h("div", { class: "form-row" },
      field("Current password", input({ name: "current_password", type: "password", autocomplete: "current-password", required: true })),
      field("New password", input({ name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 8 }), "8 characters or more."),
      field("Repeat the new password", input({ name: "repeat", type: "password", autocomplete: "new-password", required: true }))),
    h("div", { class: "form-actions" }, save), fb);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => {
      const v = values(form);
      if (v.password !== v.repeat) throw new Error("The two new passwords differ.");
      await call("POST", "/api/auth/password", { current_password: v.current_password, password: v.password });
      // Every session has ended: log in again with the new password.
      location.assign(`${BASE}/settings?changed=password`);
    });
  });
  return card("Password", h("p", { class: "muted" }, "Changing it ends every session, this one too."), form);
}

function retentionCard(ret) {
  if (!ret) return card("Usage retention", empty("Not available", "Usage records are not stored by this gateway."));
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save retention");
  const form = h("form", { id: "retention-form" },
    h("div", { class: "form-row" }, field("Keep usage records for (days)", input({ name: "days", id: "retention-days", type: "number", min: 1, value: String(ret.days) }), "Older records are deleted; the hourly sums go with them.")),
    h("div", { class: "form-actions" }, save));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => {
      const r = await call("PUT", "/api/settings/usage-retention", { days: Number(values(form).days) });
      ok(fb, `Saved: usage is kept ${r.days} days.`);
    });
  });
  return card("Usage retention", form, fb);
}

const label = k => k.replace(/_/g, " ").replace(/\bms\b/, "(ms)").replace(/^./, c => c.toUpperCase());

function resilienceCard(s) {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save resilience settings");
  const nums = Object.entries(s).filter(([, v]) => typeof v === "number");
  const bools = Object.entries(s).filter(([, v]) => typeof v === "boolean");
  const form = h("form", { id: "resilience-form" },
    h("div", { class: "form-row" }, nums.map(([k, v]) => field(label(k), input({ name: k, type: "number", min: 0, step: "any", value: String(v) })))),
    h("div", { class: "row checks" }, bools.map(([k, v]) =>
      h("label", { class: "check", for: `res-${k}` }, h("input", { type: "checkbox", id: `res-${k}`, "data-bool": k, checked: v }), label(k)))),
    h("div", { class: "form-actions" }, save), fb);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const body = {};
    for (const [k, v] of Object.entries(values(form))) body[k] = Number(v);
    for (const cb of form.querySelectorAll("input[data-bool]")) body[cb.dataset.bool] = cb.checked;
    act(fb, save, () => call("PATCH", "/api/resilience", body), "Saved.");
  });
  return card("Resilience", h("p", { class: "muted" }, "When a provider's breaker opens, how long connections cool down and models stay locked out."), form);
}

async function backupsCard() {
  const fb = feedback("backup-feedback");
  const list = h("div", { id: "backups-list" });
  const load = async () => {
    const data = await call("GET", "/api/db-backups");
    clear(list, table([
      { label: "Backup", value: b => h("code", null, b.id) },
      { label: "Kind", key: "kind" },
      { label: "Created", value: b => formatTime(b.created_at) },
      { label: "Size", num: true, value: b => formatBytes(b.size || 0) },
      { label: "", class: "actions", value: b => {
        const rfb = feedback();
        const restore = h("button", { type: "button", class: "small", "aria-label": `Restore ${b.id}` }, "Restore");
        restore.addEventListener("click", async () => {
          if (!await confirmDialog(`Restore ${b.id}? The gateway's current providers, keys, routing and settings are replaced by the backup's.`, { title: "Restore backup", confirm: "Restore" })) return;
          act(rfb, restore, () => call("POST", "/api/db-backups", { id: b.id }), "Restored.");
        });
        const del = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${b.id}` }, "Delete");
        del.addEventListener("click", async () => {
          if (!await confirmDialog(`Delete ${b.id}?`, { title: "Delete backup", confirm: "Delete" })) return;
          act(rfb, del, async () => { await call("DELETE", `/api/db-backups/${enc(b.id)}`); await load(); });
        });
        return [h("div", { class: "actions" }, restore, del), rfb];
      } },
    ], data.backups || [], { caption: "Backups", empty: empty("No backups yet", "Create one: a copy of the gateway's database kept next to it.") }));
  };
  try { await load(); } catch (e) { clear(list, h("div", { class: "error", role: "alert" }, e.message)); }

  const create = h("button", { type: "button", class: "primary", id: "backup-create" }, "Create backup");
  create.addEventListener("click", () => act(fb, create, async () => { const e = await call("PUT", "/api/db-backups"); await load(); ok(fb, `Created ${e.id}.`); }));
  const file = h("input", { type: "file", id: "import-file", accept: ".db,.sqlite,.sqlite3,.gz,.tar.gz,application/octet-stream" });
  const ifb = feedback("import-feedback");
  const importBtn = h("button", { type: "button", id: "import-submit" }, "Import");
  importBtn.addEventListener("click", async () => {
    const f = file.files[0];
    if (!f) { act(ifb, null, () => { throw new Error("Choose a backup file first."); }); return; }
    if (!await confirmDialog(`Import ${f.name}? The gateway's current providers, keys, routing and settings are replaced by the file's.`, { title: "Import backup", confirm: "Import" })) return;
    act(ifb, importBtn, async () => {
      const r = await fetch("/api/db-backups/import", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/octet-stream", Accept: "application/json" }, body: f });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error?.message || `${r.status} ${r.statusText}`);
      const n = (body.tables || []).reduce((s, t) => s + (t.rows || 0), 0);
      ok(ifb, `Imported ${f.name}: ${(body.tables || []).length} tables${n ? `, ${n} rows` : ""}.`);
      file.value = "";
    });
  });
  return h("section", { class: "card", id: "backups" }, h("h2", null, "Backups"),
    h("div", { class: "actions" }, create,
      h("a", { class: "button", id: "backup-download", href: "/api/db-backups/export", download: "" }, "Download the database"),
      h("a", { class: "button", id: "backup-download-all", href: "/api/db-backups/exportAll", download: "" }, "Download an archive")),
    fb, list,
    h("h3", null, "Import a backup file"),
    h("p", { class: "muted" }, "A database file downloaded here or an archive; it replaces the gateway's tables."),
    h("div", { class: "inline-form" }, field("Backup file", file), importBtn), ifb);
}
