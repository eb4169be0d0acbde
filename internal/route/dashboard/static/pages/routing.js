// Routing: aliases, combos (strategy, ordered targets with weights:
// created and edited) and model→combo mappings, each with the targets it
// resolves to now (the API's "resolved", from the live routing table).
import { h, clear, field, empty, confirmDialog } from "/dashboard/ui/ui.js";
import { call, act, feedback, values, input, select, card, head, resolvedList, enc, table } from "../lib.js";

const STRATEGIES = ["priority", "weighted", "round-robin", "least-used", "cost-optimized", "latency"];

export default async function routingPage() {
  const root = h("div", { id: "routing" });
  const draw = async () => {
    const [cat, maps, combos] = await Promise.all([
      call("GET", "/api/models/catalog"),
      call("GET", "/api/model-combo-mappings").catch(() => ({ mappings: [] })),
      call("GET", "/api/combos").catch(() => ({})),
    ]);
    const models = [];
    for (const p of cat.providers || []) for (const m of p.models || []) models.push(m.id);
    const ctx = { cat, models, strategies: combos.strategies || STRATEGIES, draw };
    clear(root,
      h("datalist", { id: "known-models" }, models.map(m => h("option", { value: m }))),
      aliases(ctx), combosSection(ctx), mappings(ctx, maps.mappings || []));
  };
  await draw();
  return [head("Routing"), root];
}

function del(fb, what, path, draw) {
  const b = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${what}` }, "Delete");
  b.addEventListener("click", async () => {
    if (!await confirmDialog(`Delete ${what}?`, { title: "Delete", confirm: "Delete" })) return;
    act(fb, b, async () => { await call("DELETE", path); await draw(); });
  });
  return b;
}

// ---- aliases ----

function aliases({ cat, draw }) {
  const fb = feedback();
  const save = h("button", { type: "submit", class: "primary" }, "Save alias");
  const form = h("form", { id: "alias-form", class: "inline-form" },
    field("Alias", input({ name: "name", id: "alias-name", required: true, placeholder: "fast" })),
    field("Target", input({ name: "target", id: "alias-target", required: true, list: "known-models", placeholder: "provider/model, a combo or an alias" })),
    save);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, save, async () => { await call("POST", "/api/models/alias", values(form)); await draw(); });
  });
  const lfb = feedback();
  return card("Aliases",
    h("p", { class: "muted" }, "A short name clients can use for a model, a combo or another alias."),
    form, fb,
    h("div", { id: "aliases-list" }, table([
      { label: "Alias", value: a => h("strong", null, a.name) },
      { label: "Target", value: a => h("code", null, a.target) },
      { label: "Resolves to", value: a => resolvedList(a.resolved) },
      { label: "Source", key: "source" },
      { label: "", class: "actions", value: a => a.source === "config" ? "" : del(lfb, `alias ${a.name}`, `/api/models/alias/${enc(a.name)}`, draw) },
    ], cat.aliases || [], { caption: "Aliases", empty: empty("No aliases", "Add one above: for example fast → provider/model.") })), lfb);
}

// ---- combos ----

function combosSection(ctx) {
  const { cat, draw } = ctx;
  const editor = h("div", { id: "combo-editor" });
  const lfb = feedback();
  const open = c => {
    clear(editor, comboForm(ctx, c, () => clear(editor)));
    editor.querySelector("input:not([readonly]), select").focus();
  };
  open(null);
  return card("Combos",
    h("p", { class: "muted" }, "A combo tries several targets: in order (priority), by weight, or by its strategy."),
    editor,
    h("div", { id: "combos-list" }, table([
      { label: "Combo", value: c => h("strong", null, c.name) },
      { label: "Strategy", value: c => c.strategy || "priority" },
      { label: "Targets (resolved, in order)", value: c => resolvedList({ ...(c.resolved || { targets: c.targets }), strategy: "" }) },
      { label: "Source", key: "source" },
      { label: "", class: "actions", value: c => {
        if (c.source === "config") return "";
        const edit = h("button", { type: "button", class: "small", "aria-label": `Edit combo ${c.name}`, onClick: () => open(c) }, "Edit");
        return h("div", { class: "actions" }, edit, del(lfb, `combo ${c.name}`, `/api/combos/${enc(c.name)}`, draw));
      } },
    ], cat.combos || [], { caption: "Combos", empty: empty("No combos", "Create one above: give it a name and its targets in order.") })), lfb);
}

// comboForm creates a combo (c null) or edits c: its strategy and its
// ordered targets, each with a weight (used by the weighted strategy).
function comboForm({ models, strategies, draw }, c, cancel) {
  const fb = feedback();
  const editing = !!c;
  const rows = h("ol", { class: "targets", id: "combo-targets" });
  const strategy = select({ name: "strategy", id: "combo-strategy" }, strategies, c ? c.strategy || "priority" : "priority");
  const addRow = (t = { provider: "", model: "", weight: 0 }) => {
    const model = input({ name: "target", class: "target-model", required: true, list: "known-models", placeholder: "provider/model",
      value: t.provider ? `${t.provider}/${t.model}` : "", "aria-label": "Target (provider/model)" });
    const weight = input({ name: "weight", class: "target-weight", type: "number", min: 0, value: String(t.weight || 0), "aria-label": "Weight" });
    const row = h("div", { class: "target-row" }, model, weight);
    const li = h("li", null, row);
    const move = (label, text, f) => h("button", { type: "button", class: "small ghost", "aria-label": label, title: label, onClick: f }, text);
    row.append(
      move("Move up", "↑", () => li.previousElementSibling && rows.insertBefore(li, li.previousElementSibling)),
      move("Move down", "↓", () => li.nextElementSibling && rows.insertBefore(li.nextElementSibling, li)),
      move("Remove target", "✕", () => { li.remove(); if (!rows.children.length) addRow(); }));
    rows.append(li);
    return model;
  };
  for (const t of c ? c.targets || [] : []) addRow(t);
  if (!rows.children.length) addRow();
  const more = h("button", { type: "button", class: "small", id: "combo-add-target", onClick: () => addRow().focus() }, "Add target");
  const save = h("button", { type: "submit", class: "primary", id: "combo-save" }, editing ? "Save combo" : "Create combo");
  const name = input({ name: "name", id: "combo-name", required: true, value: c ? c.name : "", readonly: editing });
  const form = h("form", { id: "combo-form" },
    editing ? h("h3", null, `Edit combo ${c.name}`) : h("h3", null, "New combo"),
    h("div", { class: "form-row" }, field("Combo name", name), field("Strategy", strategy)),
    h("div", { class: "field" }, h("span", { class: "label" }, "Targets, in the order they are tried"),
      h("div", { class: "hint" }, "provider/model and its weight (for the weighted strategy; 0 counts as 1)."), rows, h("div", null, more)),
    h("div", { class: "form-actions" }, save, editing ? h("button", { type: "button", onClick: cancel }, "Cancel") : null), fb);
  if (!editing) form.querySelector("h3").classList.add("sr-only");
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const targets = [...rows.children].map(li => {
      const m = li.querySelector(".target-model").value.trim(), w = Number(li.querySelector(".target-weight").value || 0);
      const i = m.indexOf("/");
      return i > 0 ? { provider: m.slice(0, i), model: m.slice(i + 1), weight: w } : { model: m, weight: w };
    });
    act(fb, save, async () => {
      if (editing) await call("PUT", `/api/combos/${enc(c.name)}`, { strategy: strategy.value, targets });
      else await call("POST", "/api/combos", { name: name.value.trim(), strategy: strategy.value, targets });
      await draw();
    });
  });
  return form;
}

// ---- mappings ----

function mappings({ cat, draw }, list) {
  const fb = feedback();
  const lfb = feedback();
  const combos = (cat.combos || []).map(c => c.name);
  const add = h("button", { type: "submit", class: "primary", disabled: !combos.length }, "Add mapping");
  const form = h("form", { id: "mapping-form", class: "inline-form" },
    field("Model pattern", input({ name: "pattern", id: "mapping-pattern", required: true, placeholder: "gpt-*" })),
    field("Combo", select({ name: "combo", id: "mapping-combo" }, combos)),
    field("Priority", input({ name: "priority", type: "number", value: "0" })),
    add);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const v = values(form);
    act(fb, add, async () => {
      await call("POST", "/api/model-combo-mappings", { pattern: v.pattern, combo: v.combo, priority: Number(v.priority || 0) });
      await draw();
    });
  });
  return card("Model → combo mappings",
    h("p", { class: "muted" }, "Every model name matching a pattern (and not a provider/model, alias or combo) goes to a combo; the lowest priority matches first."),
    combos.length ? null : h("div", { class: "notice" }, "Create a combo first: a mapping sends models to one."),
    form, fb,
    h("div", { id: "mappings-list" }, table([
      { label: "Pattern", value: m => h("code", null, m.pattern) },
      { label: "Combo", value: m => m.combo || m.comboId },
      { label: "Priority", num: true, key: "priority" },
      { label: "Resolves to", value: m => resolvedList(m.resolved) },
      { label: "", class: "actions", value: m => del(lfb, `mapping ${m.pattern}`, `/api/model-combo-mappings/${enc(m.id)}`, draw) },
    ], list, { caption: "Mappings", empty: empty("No mappings", "Add one above: for example gpt-* → a combo of your providers.") })), lfb);
}

