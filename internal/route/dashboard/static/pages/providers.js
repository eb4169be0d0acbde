// Providers: add one (from the catalog or custom), test it, list and hide
// its models, edit its base URL or key, delete it. Keys are masked once
// saved: the API never sends them back.
import { h, clear, field, empty, confirmDialog } from "/dashboard/ui/ui.js";
import { call, act, feedback, values, csv, input, select, card, head, enc, table } from "../lib.js";

export default async function providersPage() {
  const cat = await call("GET", "/api/models/catalog");
  const types = cat.providerTypes || [];
  const services = cat.services || [];
  const list = h("div", { id: "providers-list" });
  const fb = feedback();

  const service = select({ name: "service", id: "provider-service" }, [["", "a custom provider"], ...services.map(s => s.id)]);
  const id = input({ name: "id", id: "provider-id", required: true, placeholder: "openai" });
  const type = select({ name: "type", id: "provider-type" }, types, types.includes("openai-compatible") ? "openai-compatible" : types[0]);
  const url = input({ name: "base_url", id: "provider-url", placeholder: "https://api.example.com/v1" });
  const key = input({ name: "api_key", id: "provider-key", type: "password", autocomplete: "new-password" });
  const models = input({ name: "models", id: "provider-models", placeholder: "gpt-4o-mini" });
  const add = h("button", { type: "submit", class: "primary", id: "provider-add" }, "Add provider");
  const form = h("form", { id: "provider-form" },
    h("div", { class: "form-row" }, field("Add from the catalog (optional)", service, "A known service fills in the name, type and base URL.")),
    h("div", { class: "form-row" }, field("Name (id)", id), field("Type", type), field("Base URL", url)),
    h("div", { class: "form-row" }, field("API key", key, "Stored sealed; never shown again."), field("Models (comma separated)", models)),
    h("div", { class: "form-actions" }, add), fb);
  const defaults = () => {
    if (types.includes("openai-compatible")) type.value = "openai-compatible";
    url.placeholder = "https://api.example.com/v1";
  };
  service.addEventListener("change", () => {
    const sv = services.find(x => x.id === service.value);
    if (!sv) return;
    id.value = sv.id;
    type.value = sv.type;
    url.value = "";
    url.placeholder = `${sv.baseUrl} (from the catalog)`;
  });
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, add, async () => {
      const v = values(form);
      const body = { id: v.id, type: v.type };
      if (v.base_url) body.base_url = v.base_url;
      if (v.api_key) body.api_key = v.api_key;
      if (v.models) body.models = csv(v.models);
      await call("POST", "/api/providers", body);
      form.reset();
      defaults();
      await load();
    });
  });

  const detail = h("div", { id: "provider-detail" });
  async function load() {
    const data = await call("GET", "/api/providers");
    const rows = data.providers || data || [];
    clear(list, table([
      { label: "Name", value: p => h("strong", null, p.id) },
      { label: "Type", key: "type" },
      { label: "Base URL", class: "wrap", value: p => p.base_url || "" },
      { label: "Credentials", value: p => (p.credentials || []).map(k => k.key + (k.unreadable ? " (unreadable)" : "")).join(", ") || "none" },
      { label: "Enabled", value: p => p.enabled === false ? h("span", { class: "badge" }, "no") : h("span", { class: "badge ok" }, "yes") },
      { label: "Test", value: p => h("span", { id: `test-${p.id}`, role: "status" }) },
      { label: "", class: "actions", value: p => actions(p, load, detail) },
    ], rows, { caption: "Providers", empty: empty("No providers yet", "Add one above: pick a known service or give a type, base URL and API key.") }), detail);
  }
  await load();
  return [head("Providers"), card("Add a provider", form), card("Configured", list)];
}

// actions are a provider's buttons; what they open shows in detail.
function actions(p, reload, detail) {
  const fb = feedback();
  const stored = p.source !== "config";
  const pid = enc(p.id);
  const test = h("button", { type: "button", class: "small", id: `test-btn-${p.id}`, "aria-label": `Test ${p.id}` }, "Test");
  test.addEventListener("click", () => act(fb, test, async () => {
    const out = document.getElementById(`test-${p.id}`);
    out.textContent = "testing…";
    try {
      const r = await call("POST", `/api/providers/${pid}/test`, {});
      clear(out, h("span", { class: ["badge", r.ok ? "ok" : "error"] }, r.ok ? `OK · ${r.latency_ms} ms` : `Failed · ${r.error || ""} (${r.latency_ms} ms)`));
    } catch (e) { out.textContent = ""; throw e; }
  }));
  const models = h("button", { type: "button", class: "small", "aria-label": `Models of ${p.id}` }, "Models");
  const showModels = () => act(fb, models, async () => {
    // The gateway's list (with visibility), and what the upstream offers.
    const own = (await call("GET", `/api/provider-models?provider=${pid}`)).models || [];
    const up = await call("GET", `/api/providers/${pid}/models`);
    const have = new Set(own.map(m => m.model));
    const extra = up.source === "upstream" ? (up.models || []).filter(m => !have.has(m)) : [];
    const mfb = feedback();
    clear(detail, h("section", { class: "card", id: "provider-models-list" },
      h("div", { class: "card-head" }, h("h2", null, `Models of ${p.id}`), closeButton(detail)),
      table([
        { label: "Model", key: "model" },
        { label: "Listed", value: m => {
          const cb = h("input", { type: "checkbox", "aria-label": `Show ${m.model}`, checked: !m.hidden });
          cb.addEventListener("change", () => act(mfb, null, () => call("PATCH", "/api/provider-models", { provider: p.id, model: m.model, hidden: !cb.checked })));
          return cb;
        } },
      ], own, { empty: empty("No models declared", "Add some from the upstream's list below, or when editing the provider.") }),
      extra.length ? [h("h3", null, "Offered by the upstream"), table([
        { label: "Model", value: m => m },
        { label: "", class: "actions", value: m => h("button", { type: "button", class: "small", "aria-label": `Add ${m}`,
          onClick: ev => act(mfb, ev.currentTarget, async () => { await call("POST", "/api/provider-models", { provider: p.id, model: m }); showModels(); }) }, "Add") },
      ], extra)] : null, mfb));
  });
  models.addEventListener("click", showModels);
  const edit = h("button", { type: "button", class: "small", "aria-label": `Edit ${p.id}`, disabled: !stored, title: stored ? null : "Declared in the configuration file" }, "Edit");
  edit.addEventListener("click", () => {
    const efb = feedback();
    const save = h("button", { type: "submit", class: "primary" }, "Save");
    const f = h("form", { id: "provider-edit" },
      h("div", { class: "form-row" },
        field("Base URL", input({ name: "base_url", value: p.base_url || "" })),
        field("New API key", input({ name: "api_key", type: "password", autocomplete: "new-password" }), "Blank keeps the stored key.")),
      h("div", { class: "form-actions" }, save), efb);
    f.addEventListener("submit", ev => {
      ev.preventDefault();
      act(efb, save, async () => {
        const v = values(f);
        const body = { base_url: v.base_url };
        if (v.api_key) body.api_key = v.api_key; else body.keep_credentials = true;
        await call("PATCH", `/api/providers/${pid}`, body);
        await reload();
      });
    });
    clear(detail, h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", null, `Edit ${p.id}`), closeButton(detail)), f));
    f.querySelector("input").focus();
  });
  const del = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${p.id}`, disabled: !stored }, "Delete");
  del.addEventListener("click", async () => {
    if (!await confirmDialog(`Delete provider ${p.id}? Combos and aliases that name it stop resolving.`, { title: "Delete provider", confirm: "Delete" })) return;
    act(fb, del, async () => { await call("DELETE", `/api/providers/${pid}`); await reload(); });
  });
  return [h("div", { class: "actions" }, test, models, edit, del), fb];
}

function closeButton(detail) {
  return h("button", { type: "button", class: "small ghost", onClick: () => clear(detail) }, "Close");
}
