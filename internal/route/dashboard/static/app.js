// The OmniRoute dashboard: a client of the management API (/api/...) and,
// in the playground, of the gateway's OpenAI endpoint (/v1/...). No inline
// script or style: everything is built here with the DOM.

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutBtn = document.getElementById('logout');

// ---- helpers ----

export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the management API; writes are JSON (the gateway refuses any
// other body type from a browser), and an error's message is the API's.
export async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method)) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body === undefined ? {} : body);
  }
  const r = await fetch(path, opt);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    if (data && data.error) msg = typeof data.error === 'string' ? data.error : (data.error.message || data.error.code || msg);
    if (r.status === 401 && !path.startsWith('/api/auth/')) { setTimeout(() => boot(), 0); }
    throw new APIError(r.status, msg);
  }
  return data;
}

// h builds an element: h('button', {type: 'button', onclick: f}, 'Text').
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

let seq = 0;
function field(label, attrs) {
  const id = attrs.id || `f${++seq}`;
  const input = attrs.tag === 'select' ? h('select', { id, name: attrs.name }, (attrs.options || []).map(o => h('option', { value: o }, o)))
    : attrs.tag === 'textarea' ? h('textarea', { id, name: attrs.name, placeholder: attrs.placeholder })
    : h('input', { id, name: attrs.name, type: attrs.type || 'text', placeholder: attrs.placeholder, value: attrs.value, required: attrs.required, autocomplete: attrs.autocomplete || 'off' });
  return h('label', { for: id }, label, input);
}

// saved says in box that an action worked.
function saved(box, msg = 'Saved.') { box.className = 'ok'; box.textContent = msg; }

// alertBox is where an action's error is shown, next to it.
function alertBox() { return h('p', { class: 'error', role: 'alert', 'aria-live': 'assertive' }); }

// act runs fn for a button or form, showing its error in box.
async function act(box, btn, fn) {
  box.textContent = '';
  box.className = 'error';
  if (btn) btn.disabled = true;
  try { await fn(); } catch (e) { box.textContent = e.message; } finally { if (btn) btn.disabled = false; }
}

function table(cols, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, cols.map(c => h('th', { scope: 'col' }, c[0])))),
    h('tbody', {}, rows.map(r => h('tr', {}, cols.map(c => { const v = c[1](r); return v instanceof Node ? h('td', { class: c[2] }, v) : h('td', { class: c[2] }, v ?? ''); }))))));
}

function formValues(form) { return Object.fromEntries(new FormData(form).entries()); }
function csv(s) { return (s || '').split(',').map(x => x.trim()).filter(Boolean); }
function fmtTime(t) { return t ? new Date(t).toLocaleString() : ''; }
function page(title, ...kids) { main.replaceChildren(h('h1', {}, title), ...kids); main.focus({ preventScroll: true }); }

// ---- state ----

const state = {
  lastKey: '', // the raw key created last, kept in memory only (never stored)
};

// ---- first run, login ----

async function boot() {
  let s;
  try { s = await api('GET', '/api/settings/require-login'); } catch (e) { main.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); return; }
  if (s.setupRequired) return setupPage();
  if (s.requireLogin && !s.loggedIn) return loginPage();
  showNav(s.requireLogin);
  route();
}

function setupPage() {
  hideNav();
  const box = alertBox();
  const form = h('form', { class: 'card narrow', id: 'setup-form' },
    h('p', {}, 'First run: set the dashboard password. The one-time setup token is in the gateway\'s log (setup_token=omrs_…).'),
    field('Setup token', { name: 'token', id: 'setup-token', required: true }),
    field('New password (8+ characters)', { name: 'password', id: 'setup-password', type: 'password', required: true, autocomplete: 'new-password' }),
    h('p', {}, h('button', { type: 'submit', id: 'setup-submit' }, 'Set password')), box);
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    act(box, form.querySelector('button'), async () => { await api('POST', '/api/auth/setup', formValues(form)); location.hash = '#/providers'; boot(); });
  });
  page('Set up OmniRoute', form);
}

function loginPage() {
  hideNav();
  const box = alertBox();
  const form = h('form', { class: 'card narrow', id: 'login-form' },
    field('Password', { name: 'password', id: 'login-password', type: 'password', required: true, autocomplete: 'current-password' }),
    h('p', {}, h('button', { type: 'submit', id: 'login-submit' }, 'Log in')), box);
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    act(box, form.querySelector('button'), async () => { await api('POST', '/api/auth/login', formValues(form)); boot(); });
  });
  page('Log in', form);
}

const pages = {
  providers: ['Providers', providersPage],
  keys: ['Keys', keysPage],
  routing: ['Routing', routingPage],
  playground: ['Playground', playgroundPage],
  usage: ['Usage', usagePage],
  health: ['Health', healthPage],
  settings: ['Settings', settingsPage],
};

function showNav(requireLogin) {
  nav.replaceChildren(...Object.entries(pages).map(([k, [t]]) => h('a', { href: `#/${k}`, id: `nav-${k}` }, t)));
  nav.hidden = false;
  logoutBtn.hidden = !requireLogin;
}
function hideNav() { nav.hidden = true; logoutBtn.hidden = true; }

logoutBtn.addEventListener('click', async () => {
  try { await api('POST', '/api/auth/logout'); } catch { /* the session is gone either way */ }
  boot();
});

let leave = null; // what the current page stops when left (a live tail)
function route() {
  if (leave) { leave(); leave = null; }
  const name = (location.hash.replace(/^#\/?/, '').split('?')[0]) || 'providers';
  const p = pages[name] || pages.providers;
  for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', a.id === `nav-${name}`), a.id === `nav-${name}` && a.setAttribute('aria-current', 'page');
  document.title = `${p[0]} · OmniRoute`;
  p[1]().catch(e => main.append(h('p', { class: 'error', role: 'alert' }, e.message)));
}
window.addEventListener('hashchange', () => { if (!nav.hidden) route(); });

// ---- providers ----

async function providersPage() {
  const cat = await api('GET', '/api/models/catalog');
  const types = cat.providerTypes || [];
  const services = cat.services || [];
  const list = h('div', { id: 'providers-list' });
  const box = alertBox();
  const known = field('Add from the catalog (optional)', { tag: 'select', name: 'service', id: 'provider-service', options: ['', ...services.map(x => x.id)] });
  const form = h('form', { class: 'card', id: 'provider-form' },
    h('div', { class: 'row' }, known),
    h('div', { class: 'row' },
      field('Name (id)', { name: 'id', id: 'provider-id', required: true, placeholder: 'openai' }),
      field('Type', { tag: 'select', name: 'type', id: 'provider-type', options: types }),
      field('Base URL', { name: 'base_url', id: 'provider-url', placeholder: 'https://api.example.com/v1' })),
    h('div', { class: 'row' },
      field('API key', { name: 'api_key', id: 'provider-key', type: 'password', autocomplete: 'new-password' }),
      field('Models (comma separated)', { name: 'models', id: 'provider-models', placeholder: 'gpt-4o-mini' })),
    h('p', {}, h('button', { type: 'submit', id: 'provider-add' }, 'Add provider')), box);
  const defaults = () => {
    if (types.includes('openai-compatible')) form.querySelector('#provider-type').value = 'openai-compatible';
    form.querySelector('#provider-url').placeholder = 'https://api.example.com/v1';
  };
  defaults();
  const knownSel = known.querySelector('select');
  knownSel.options[0].textContent = 'a custom provider';
  knownSel.addEventListener('change', () => {
    const sv = services.find(x => x.id === knownSel.value);
    if (!sv) return;
    form.querySelector('#provider-id').value = sv.id;
    form.querySelector('#provider-type').value = sv.type;
    form.querySelector('#provider-url').value = '';
    form.querySelector('#provider-url').placeholder = `${sv.baseUrl} (from the catalog)`;
  });
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    act(box, form.querySelector('button[type=submit]'), async () => {
      const v = formValues(form);
      const body = { id: v.id, type: v.type };
      if (v.base_url) body.base_url = v.base_url;
      if (v.api_key) body.api_key = v.api_key;
      if (v.models) body.models = csv(v.models);
      await api('POST', '/api/providers', body);
      form.reset();
      defaults();
      await load();
    });
  });
  async function load() {
    const data = await api('GET', '/api/providers');
    const rows = data.providers || data || [];
    list.replaceChildren(table([
      ['Name', p => p.id], ['Type', p => p.type], ['Base URL', p => h('span', { class: 'wrap' }, p.base_url || '')],
      ['Credentials', p => (p.credentials || []).map(k => k.key + (k.unreadable ? ' (unreadable)' : '')).join(', ') || 'none'],
      ['Enabled', p => (p.enabled === false ? 'no' : 'yes')],
      ['Test', p => h('span', { id: `test-${p.id}`, role: 'status' })],
      ['', p => providerActions(p, load), 'actions'],
    ], rows, 'No providers yet: add one above (type, base URL, API key).'));
  }
  page('Providers', form, h('h2', {}, 'Configured'), list);
  await load();
}

function providerActions(p, reload) {
  const box = alertBox();
  const stored = p.source !== 'config';
  const test = h('button', { type: 'button', class: 'secondary', id: `test-btn-${p.id}`, 'aria-label': `Test ${p.id}` }, 'Test');
  test.addEventListener('click', () => act(box, test, async () => {
    const out = document.getElementById(`test-${p.id}`);
    out.textContent = 'testing…';
    const r = await api('POST', `/api/providers/${encodeURIComponent(p.id)}/test`, {});
    out.replaceChildren(h('span', { class: r.ok ? 'ok' : 'bad' }, r.ok ? `OK · ${r.latency_ms} ms` : `Failed · ${r.error || ''} (${r.latency_ms} ms)`));
  }));
  const models = h('button', { type: 'button', class: 'secondary', 'aria-label': `Models of ${p.id}` }, 'Models');
  const modelsOut = h('div');
  models.addEventListener('click', () => act(box, models, async () => {
    // The gateway's list (with visibility), and what the upstream offers.
    const own = (await api('GET', `/api/provider-models?provider=${encodeURIComponent(p.id)}`)).models || [];
    const up = await api('GET', `/api/providers/${encodeURIComponent(p.id)}/models`);
    const have = new Set(own.map(m => m.model));
    const extra = up.source === 'upstream' ? (up.models || []).filter(m => !have.has(m)) : [];
    modelsOut.replaceChildren(table([['Model', m => m.model], ['Listed', m => {
      const cb = h('input', { type: 'checkbox', 'aria-label': `Show ${m.model}`, checked: !m.hidden });
      cb.addEventListener('change', () => act(box, null, () => api('PATCH', '/api/provider-models', { provider: p.id, model: m.model, hidden: !cb.checked })));
      return cb;
    }]], own, 'No models declared: add some below or when editing the provider.'),
    extra.length ? h('div', {}, h('p', { class: 'muted' }, 'Offered by the upstream:'), table([['Model', m => m], ['', m => h('button', { type: 'button', class: 'secondary', 'aria-label': `Add ${m}`,
      onclick: ev => act(box, ev.target, async () => { await api('POST', '/api/provider-models', { provider: p.id, model: m }); models.click(); }) }, 'Add'), 'actions']], extra, '')) : null);
  }));
  const edit = h('button', { type: 'button', class: 'secondary', 'aria-label': `Edit ${p.id}`, disabled: !stored }, 'Edit');
  edit.addEventListener('click', () => {
    const url = field('Base URL', { name: 'base_url', value: p.base_url || '' });
    const key = field('New API key (blank: keep)', { name: 'api_key', type: 'password' });
    const f = h('form', { class: 'card' }, url, key, h('button', { type: 'submit' }, 'Save'), ' ', h('button', { type: 'button', class: 'secondary', onclick: () => f.remove() }, 'Cancel'));
    f.addEventListener('submit', ev => {
      ev.preventDefault();
      act(box, f.querySelector('button'), async () => {
        const v = formValues(f);
        const body = { base_url: v.base_url };
        if (v.api_key) body.api_key = v.api_key; else body.keep_credentials = true;
        await api('PATCH', `/api/providers/${encodeURIComponent(p.id)}`, body);
        await reload();
      });
    });
    edit.parentElement.append(f);
  });
  const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${p.id}`, disabled: !stored }, 'Delete');
  del.addEventListener('click', () => act(box, del, async () => {
    if (!confirm(`Delete provider ${p.id}?`)) return;
    await api('DELETE', `/api/providers/${encodeURIComponent(p.id)}`);
    await reload();
  }));
  return h('div', {}, test, models, edit, del, box, modelsOut);
}

// ---- keys ----

async function keysPage() {
  const list = h('div', { id: 'keys-list' });
  const shown = h('div', { id: 'new-key' });
  const box = alertBox();
  const form = h('form', { class: 'card', id: 'key-form' },
    h('div', { class: 'row' },
      field('Name', { name: 'name', id: 'key-name', required: true, placeholder: 'laptop' }),
      field('Allowed models (comma separated, blank: all)', { name: 'allowed_models', id: 'key-models' }),
      field('Allowed providers (comma separated, blank: all)', { name: 'allowed_providers', id: 'key-providers' })),
    h('p', {}, h('button', { type: 'submit', id: 'key-create' }, 'Create key')), box, shown);
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    act(box, form.querySelector('button[type=submit]'), async () => {
      const v = formValues(form);
      const body = { name: v.name };
      if (v.allowed_models) body.allowed_models = csv(v.allowed_models);
      if (v.allowed_providers) body.allowed_providers = csv(v.allowed_providers);
      const k = await api('POST', '/api/keys', body);
      state.lastKey = k.key;
      const copy = h('button', { type: 'button', class: 'secondary', id: 'key-copy' }, 'Copy');
      copy.addEventListener('click', async () => { try { await navigator.clipboard.writeText(k.key); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy by hand'; } });
      shown.replaceChildren(h('p', {}, 'Your new key — it is shown only once:'), h('p', { class: 'secret', id: 'key-raw' }, k.key), copy);
      form.reset();
      await load();
    });
  });
  const limitsOut = h('div', { id: 'key-limits' });
  async function load() {
    const data = await api('GET', '/api/keys');
    const rows = data.keys || data || [];
    list.replaceChildren(table([
      ['Name', k => k.name], ['Prefix', k => k.prefix], ['Kind', k => k.kind || 'managed'], ['Allowed models', k => (k.allowed_models || []).join(', ') || 'all'],
      ['Limits', k => ['rpm', 'rpd', 'tpm', 'tpd'].filter(n => k[n]).map(n => `${n.toUpperCase()} ${k[n]}`).join(' · ') || 'none'],
      ['Created', k => fmtTime(k.created_at)], ['Last used', k => fmtTime(k.last_used_at) || 'never'],
      ['', k => keyActions(k, load, limitsOut), 'actions'],
    ], rows, 'No keys yet: create one above and give it to a client.'));
  }
  page('Keys', form, h('h2', {}, 'Keys'), list, limitsOut);
  await load();
  const reg = await api('GET', '/api/settings/registered-keys').catch(() => null);
  if (reg) main.append(h('h2', {}, 'Registered keys'), h('section', { class: 'card', id: 'registered-keys' }, kv(reg)));
}

function keyActions(k, reload, out) {
  const box = alertBox();
  const limits = h('button', { type: 'button', class: 'secondary', id: `limits-${k.id}`, 'aria-label': `Policy and limits of ${k.name}` }, 'Limits');
  limits.addEventListener('click', () => act(box, limits, async () => {
    const b = await api('GET', `/api/usage/budget?apiKeyId=${encodeURIComponent(k.id)}`).catch(() => null);
    const pol = h('form', { class: 'card', id: 'policy-form' }, h('h2', {}, `Policy and limits of ${k.name}`),
      h('div', { class: 'row' },
        field('Allowed models (globs, comma separated; blank: all)', { name: 'allowed_models', value: (k.allowed_models || []).join(', ') }),
        field('Allowed providers (comma separated; blank: all)', { name: 'allowed_providers', value: (k.allowed_providers || []).join(', ') })),
      h('div', { class: 'row' }, ['rpm', 'rpd', 'tpm', 'tpd'].map(n => field(`${n.toUpperCase()} (0: unlimited)`, { name: n, type: 'number', value: String(k[n] ?? 0) }))),
      h('p', {}, h('button', { type: 'submit' }, 'Save policy')), alertBox());
    pol.addEventListener('submit', ev => {
      ev.preventDefault();
      const fb = pol.querySelector('.error');
      act(fb, pol.querySelector('button'), async () => {
        const v = formValues(pol);
        const body = { allowed_models: csv(v.allowed_models), allowed_providers: csv(v.allowed_providers) };
        for (const n of ['rpm', 'rpd', 'tpm', 'tpd']) body[n] = Number(v[n] || 0);
        await api('PATCH', `/api/keys/${encodeURIComponent(k.id)}`, body);
        saved(fb);
        await reload();
      });
    });
    const cur = (b && (b.budget || b)) || {};
    const bud = h('form', { class: 'card', id: 'budget-form' }, h('h2', {}, 'Budget (USD)'),
      h('div', { class: 'row' }, [['hourlyLimitUsd', 'Hourly'], ['dailyLimitUsd', 'Daily'], ['weeklyLimitUsd', 'Weekly'], ['monthlyLimitUsd', 'Monthly'], ['warningThreshold', 'Warn at (0–1)']]
        .map(([n, l]) => field(l, { name: n, type: 'number', value: cur[n] !== undefined ? String(cur[n]) : '' }))),
      h('p', {}, h('button', { type: 'submit' }, 'Save budget')), alertBox(),
      b ? h('div', { id: 'budget-status' }, h('h2', {}, 'Current windows and warnings'), kv(b)) : h('p', { class: 'empty' }, 'No budget: set a daily, weekly or monthly limit above.'));
    bud.addEventListener('submit', ev => {
      ev.preventDefault();
      const fb = bud.querySelector('.error');
      act(fb, bud.querySelector('button'), async () => {
        const body = { apiKeyId: k.id };
        for (const [n, v] of Object.entries(formValues(bud))) if (v !== '') body[n] = Number(v);
        const st = await api('POST', '/api/usage/budget', body);
        saved(fb);
        bud.querySelector('#budget-status')?.replaceChildren(h('h2', {}, 'Current windows and warnings'), kv(st));
      });
    });
    out.replaceChildren(pol, bud);
  }));
  const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}` }, 'Revoke');
  del.addEventListener('click', () => act(box, del, async () => {
    if (!confirm(`Revoke key ${k.name}?`)) return;
    await api('DELETE', `/api/keys/${encodeURIComponent(k.id)}`);
    await reload();
  }));
  return h('div', {}, limits, del, box);
}

// ---- routing ----

async function routingPage() {
  const cat = await api('GET', '/api/models/catalog');
  const maps = await api('GET', '/api/model-combo-mappings').catch(() => ({}));
  const aliasBox = alertBox(), comboBox = alertBox(), mapBox = alertBox();
  const aliasForm = h('form', { class: 'card', id: 'alias-form' }, h('div', { class: 'row' },
    field('Alias', { name: 'name', required: true, placeholder: 'fast' }), field('Target (provider/model)', { name: 'target', required: true }),
    h('button', { type: 'submit' }, 'Save alias')), aliasBox);
  aliasForm.addEventListener('submit', ev => { ev.preventDefault(); act(aliasBox, null, async () => { await api('POST', '/api/models/alias', formValues(aliasForm)); routingPage(); }); });
  const comboForm = h('form', { class: 'card', id: 'combo-form' }, h('div', { class: 'row' },
    field('Combo name', { name: 'name', required: true }),
    field('Strategy', { tag: 'select', name: 'strategy', options: ['priority', 'weighted', 'round-robin', 'least-used', 'cost-optimized', 'latency'] }),
    field('Targets in order (provider/model or provider/model*weight, comma separated)', { name: 'targets', required: true }),
    h('button', { type: 'submit' }, 'Save combo')), comboBox);
  comboForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = formValues(comboForm);
    act(comboBox, null, async () => { await api('POST', '/api/combos', { name: v.name, strategy: v.strategy, targets: csv(v.targets) }); routingPage(); });
  });
  const combos = cat.combos || [];
  const mapForm = h('form', { class: 'card', id: 'mapping-form' }, h('div', { class: 'row' },
    field('Model pattern', { name: 'pattern', required: true, placeholder: 'gpt-*' }),
    field('Combo', { tag: 'select', name: 'combo', options: combos.map(c => c.name) }),
    field('Priority', { name: 'priority', type: 'number', value: '0' }),
    h('button', { type: 'submit' }, 'Add mapping')), mapBox);
  mapForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = formValues(mapForm);
    act(mapBox, null, async () => { await api('POST', '/api/model-combo-mappings', { pattern: v.pattern, combo: v.combo, priority: Number(v.priority || 0) }); routingPage(); });
  });
  const del = (path, box) => h('button', { type: 'button', class: 'danger', onclick: () => act(box, null, async () => { await api('DELETE', path); routingPage(); }) }, 'Delete');
  const mappings = maps.mappings || maps.data || (Array.isArray(maps) ? maps : []);
  page('Routing',
    h('h2', {}, 'Aliases'), aliasForm,
    table([['Alias', a => a.name], ['Target', a => a.target], ['Source', a => a.source], ['', a => a.source === 'config' ? '' : del(`/api/models/alias/${encodeURIComponent(a.name)}`, aliasBox), 'actions']],
      cat.aliases || [], 'No aliases: an alias gives a model a short name clients can use.'),
    h('h2', {}, 'Combos'), comboForm,
    table([['Combo', c => c.name], ['Strategy', c => c.strategy || 'priority'],
      ['Targets (resolved, in order)', c => (c.targets || []).map(t => typeof t === 'string' ? t : `${t.provider}/${t.model}${t.weight ? ` ×${t.weight}` : ''}`).join(' → ')],
      ['', c => c.source === 'config' ? '' : del(`/api/combos/${encodeURIComponent(c.name)}`, comboBox), 'actions']],
      combos, 'No combos: a combo tries several targets in order or by weight.'),
    h('h2', {}, 'Model → combo mappings'), mapForm,
    table([['Pattern', m => m.pattern], ['Combo', m => m.combo || m.comboId], ['Priority', m => m.priority], ['', m => del(`/api/model-combo-mappings/${encodeURIComponent(m.id)}`, mapBox), 'actions']],
      mappings, 'No mappings: a mapping sends every model matching a pattern to a combo.'));
}

// ---- playground ----

async function playgroundPage() {
  const cat = await api('GET', '/api/models/catalog');
  const models = [];
  for (const p of cat.providers || []) for (const m of p.models || []) models.push(m.id);
  for (const a of cat.aliases || []) models.push(a.name);
  for (const c of cat.combos || []) models.push(c.name);
  const box = alertBox();
  const out = h('pre', { class: 'answer', id: 'pg-answer', 'aria-live': 'polite' });
  const info = h('div', { class: 'stats', id: 'pg-info' });
  const attempts = h('div', { id: 'pg-attempts' });
  const form = h('form', { class: 'card', id: 'pg-form' },
    h('div', { class: 'row' },
      field('Model, alias or combo', { tag: 'select', name: 'model', id: 'pg-model', options: models }),
      field('Gateway key (kept in this page only)', { name: 'key', id: 'pg-key', type: 'password', value: state.lastKey })),
    field('Message', { tag: 'textarea', name: 'message', id: 'pg-message' }),
    h('p', {}, h('button', { type: 'submit', id: 'pg-send' }, 'Send')), box);
  if (!models.length) form.prepend(h('p', { class: 'empty' }, 'No models yet: add a provider with models first.'));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = formValues(form);
    state.lastKey = v.key;
    act(box, form.querySelector('button[type=submit]'), () => chat(v, out, info, attempts));
  });
  page('Playground', form, h('h2', {}, 'Answer'), out, info, attempts);
}

async function chat(v, out, info, attempts) {
  out.textContent = '';
  info.replaceChildren();
  attempts.replaceChildren();
  const t0 = performance.now();
  const headers = { 'Content-Type': 'application/json' };
  if (v.key) headers.Authorization = `Bearer ${v.key}`;
  const r = await fetch('/v1/chat/completions', { method: 'POST', headers, credentials: 'omit',
    body: JSON.stringify({ model: v.model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: v.message || 'Hello' }] }) });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { const e = await r.json(); msg = e.error?.message || msg; } catch { /* not JSON */ }
    throw new APIError(r.status, msg);
  }
  const target = r.headers.get('X-OmniRoute-Model') || '';
  let first = 0, usage = null, buf = '';
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      for (const line of ev.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const d = line.slice(5).trim();
        if (d === '[DONE]') continue;
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
  info.replaceChildren(
    h('span', { id: 'pg-target' }, `Answered by: ${target || 'unknown'}`),
    h('span', {}, `Latency: ${ms} ms` + (first ? ` (first token ${Math.round(first - t0)} ms)` : '')),
    usage ? h('span', {}, `Tokens: ${usage.prompt_tokens ?? '?'} in / ${usage.completion_tokens ?? '?'} out`) : null);
  // The attempts and cost as the usage log recorded them (written a
  // moment after the answer ends).
  const since = Date.now() - ms - 2000;
  for (let i = 0; i < 20; i++) {
    await new Promise(res => setTimeout(res, 250));
    const logs = await api('GET', '/api/usage/request-logs?limit=1');
    const rec = (logs.logs || [])[0];
    if (rec && Date.parse(rec.time) >= since) {
      info.append(h('span', { id: 'pg-cost' }, `Cost: $${(rec.costUsd ?? 0).toFixed(6)}`));
      attempts.replaceChildren(h('h2', {}, 'Attempts'), attemptTable(rec.attemptList || []));
      return;
    }
  }
  attempts.replaceChildren(h('p', { class: 'muted' }, 'The request log has not recorded this request yet: see Usage.'));
}

function attemptTable(list) {
  return table([['Target', a => `${a.provider || ''}/${a.model || ''}`], ['Connection', a => a.connection],
    ['Status', a => h('span', { class: a.status >= 400 ? 'bad' : 'ok' }, String(a.status))], ['Time', a => `${Math.round((a.elapsed || 0) / 1e6)} ms`], ['Error', a => a.error || '']],
  list, 'No attempts recorded (a cache hit or a refused request).');
}

// ---- usage ----

let uplotLoad = null;
function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotLoad) {
    uplotLoad = new Promise((res, rej) => {
      document.head.append(h('link', { rel: 'stylesheet', href: 'ui/vendor/uPlot.min.css' }));
      const s = h('script', { src: 'ui/vendor/uPlot.iife.min.js' });
      s.addEventListener('load', () => res(window.uPlot));
      s.addEventListener('error', () => rej(new Error('chart library missing')));
      document.head.append(s);
    });
  }
  return uplotLoad;
}

async function drawChart(el, title, xs, series) {
  el.replaceChildren();
  let UPlot;
  try { UPlot = await loadUPlot(); } catch {
    el.append(table([['Time', r => r[0]], ...series.map((s, i) => [s.label, r => r[i + 1]])], xs.map((x, i) => [new Date(x * 1000).toLocaleString(), ...series.map(s => s.data[i])]), 'No data.'));
    return;
  }
  const width = Math.max(280, Math.min(el.clientWidth || 600, 1100));
  const colors = ['#0b62d6', '#d6730b', '#1a7f37', '#8250df'];
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue('--fg').trim() || '#1b1f24', line = css.getPropertyValue('--line').trim() || '#d8dde3';
  const axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
  new UPlot({ title, width, height: 200, axes: [axis, axis], series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2 }))] },
    [xs, ...series.map(s => s.data)], el);
}

async function usagePage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const period = params.get('period') || '24h';
  const filt = { provider: params.get('provider') || '', model: params.get('model') || '', apiKeyId: params.get('apiKeyId') || '' };
  const q = new URLSearchParams({ period });
  for (const [k, v] of Object.entries(filt)) if (v) q.set(k, v);
  const seg = h('div', { class: 'seg', role: 'group', 'aria-label': 'Period' }, ['1h', '24h', '7d', '30d'].map(p => {
    const b = h('button', { type: 'button', class: 'secondary', 'aria-pressed': String(p === period), id: `period-${p}` }, p);
    b.addEventListener('click', () => { const n = new URLSearchParams(q); n.set('period', p); location.hash = `#/usage?${n}`; });
    return b;
  }));
  const keys = await api('GET', '/api/keys').catch(() => ({ keys: [] }));
  const filters = h('form', { class: 'card', id: 'usage-filters' }, h('div', { class: 'row' },
    field('Provider', { name: 'provider', value: filt.provider }), field('Model', { name: 'model', value: filt.model }),
    field('Key', { tag: 'select', name: 'apiKeyId', options: [''] }), h('button', { type: 'submit' }, 'Filter')));
  const keySel = filters.querySelector('select');
  for (const k of keys.keys || keys || []) keySel.append(h('option', { value: k.id, selected: k.id === filt.apiKeyId }, k.name));
  keySel.options[0].textContent = 'all keys';
  filters.addEventListener('submit', ev => {
    ev.preventDefault();
    const n = new URLSearchParams({ period });
    for (const [k, v] of Object.entries(formValues(filters))) if (v) n.set(k, v);
    location.hash = `#/usage?${n}`;
  });
  const totals = h('div', { class: 'stats', id: 'usage-totals' });
  const cReq = h('div', { class: 'chart', id: 'chart-requests' });
  const cTok = h('div', { class: 'chart', id: 'chart-tokens' });
  const cCost = h('div', { class: 'chart', id: 'chart-cost' });
  const logs = h('div', { id: 'usage-logs' });
  const tailBox = h('div', { id: 'usage-tail' });
  const lat = h('div', { id: 'usage-latency' });
  const by = params.get('by') || 'provider';
  const bySel = h('div', { class: 'seg', role: 'group', 'aria-label': 'Group by' }, ['provider', 'model', 'key'].map(g => {
    const bt = h('button', { type: 'button', class: 'secondary', 'aria-pressed': String(g === by), id: `by-${g}` }, `By ${g}`);
    bt.addEventListener('click', () => { const n = new URLSearchParams(q); n.set('by', g); location.hash = `#/usage?${n}`; });
    return bt;
  }));
  const groups = h('div', { id: 'usage-groups' });
  page('Usage', seg, filters, totals, cReq, cTok, cCost, h('h2', {}, 'Breakdown'), bySel, groups, h('h2', {}, 'Latency by provider (last hour)'), lat,
    h('h2', {}, 'Live'), tailBox, h('h2', {}, 'Request log'), logs);
  startTail(tailBox, filt);
  const hist = await api('GET', `/api/usage/history?${q}`);
  const b = hist.buckets || [];
  const xs = b.map(x => Date.parse(x.time) / 1000);
  const t = hist.totals || {};
  totals.replaceChildren(h('span', {}, `Requests: ${t.requests ?? 0}`), h('span', {}, `Errors: ${t.errors ?? 0}`),
    h('span', {}, `Tokens: ${t.totalTokens ?? 0}`), h('span', {}, `Cost: $${(t.costUsd ?? 0).toFixed(4)}`));
  await drawChart(cReq, 'Requests', xs, [{ label: 'requests', data: b.map(x => x.requests) }, { label: 'errors', data: b.map(x => x.errors) }]);
  await drawChart(cTok, 'Tokens', xs, [{ label: 'input', data: b.map(x => x.inputTokens) }, { label: 'output', data: b.map(x => x.outputTokens) }]);
  await drawChart(cCost, 'Cost (USD)', xs, [{ label: 'cost', data: b.map(x => x.costUsd) }]);
  const gq = new URLSearchParams(q); gq.set('by', by);
  const gs = await api('GET', `/api/usage/groups?${gq}`);
  const keyNames = Object.fromEntries((keys.keys || keys || []).map(k => [k.id, k.name]));
  const filterName = { provider: 'provider', model: 'model', key: 'apiKeyId' }[by];
  groups.replaceChildren(table([
    [by[0].toUpperCase() + by.slice(1), g => {
      const label = (by === 'key' ? keyNames[g.key] || g.key : g.key) || (by === 'key' ? 'no key' : 'none (refused)');
      if (!g.key) return label;
      const n = new URLSearchParams(q); n.set(filterName, g.key); n.set('by', by);
      return h('a', { href: `#/usage?${n}` }, label);
    }],
    ['Requests', g => g.requests], ['Errors', g => g.errors], ['Tokens', g => g.totalTokens], ['Cost', g => `$${(g.costUsd || 0).toFixed(4)}`], ['Avg latency', g => `${Math.round(g.avgLatencyMs || 0)} ms`],
  ], gs.groups || [], 'No requests in this period.'));
  const tel = await api('GET', '/api/telemetry/summary');
  lat.replaceChildren(table([['Provider', r => r[0]], ['p50', r => `${r[1].p50} ms`], ['p95', r => `${r[1].p95} ms`], ['p99', r => `${r[1].p99} ms`], ['Requests', r => r[1].count]],
    Object.entries(tel.providers || {}), 'No answered requests in the last hour.'));
  await logPage(logs, q, '');
}

// startTail shows new requests as the gateway records them (server-sent
// events), newest on top, until the page is left.
function startTail(el, filt) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filt)) if (v) q.set(k, v);
  const list = h('ul', { id: 'tail-list' });
  const status = h('p', { class: 'muted', role: 'status' }, 'Waiting for new requests…');
  el.replaceChildren(status, list);
  const es = new EventSource(`/api/usage/tail?${q}`);
  es.addEventListener('usage', ev => {
    const r = JSON.parse(ev.data);
    status.textContent = 'New requests appear here as they are recorded.';
    list.prepend(h('li', {}, `${fmtTime(r.time)} · ${r.model} → ${r.provider || '—'} · ${r.status} · ${usageOf(r)} · ${r.latencyMs} ms`));
    while (list.children.length > 20) list.lastChild.remove();
  });
  es.addEventListener('error', () => { status.textContent = 'Live tail reconnecting…'; });
  leave = () => es.close();
}

// usageOf says what a request used: its tokens, and for a modality
// beyond chat (rerank, moderation …) its amount in its own unit.
function usageOf(r) {
  const tokens = `${(r.inputTokens || 0) + (r.outputTokens || 0)} tokens`;
  if (!r.modality) return tokens;
  const unit = r.unit ? `${r.quantity || 0} ${r.unit.replace('_', ' ')}${r.quantity === 1 ? '' : 's'}` : '';
  return [r.modality, unit, r.inputTokens ? tokens : ''].filter(Boolean).join(' · ');
}

async function logPage(el, q, cursor) {
  const lq = new URLSearchParams(q);
  lq.set('limit', '25');
  if (cursor) lq.set('cursor', cursor);
  const data = await api('GET', `/api/usage/request-logs?${lq}`);
  const recs = data.logs || [];
  const detail = h('div', { id: 'log-detail' });
  const rows = table([
    ['Time', r => fmtTime(r.time)], ['Model', r => r.model], ['Provider', r => r.provider],
    ['Status', r => h('span', { class: r.status >= 400 ? 'bad' : '' }, String(r.status))], ['Usage', usageOf],
    ['Latency', r => `${r.latencyMs ?? ''} ms`], ['Cost', r => `$${(r.costUsd ?? 0).toFixed(6)}`],
    ['', r => h('button', { type: 'button', class: 'secondary', onclick: () => detail.replaceChildren(h('h2', {}, 'Attempts'), attemptTable(r.attemptList || [])) }, 'Attempts'), 'actions'],
  ], recs, 'No requests in this period: send one from the Playground or a client.');
  const more = data.nextCursor ? h('button', { type: 'button', class: 'secondary', id: 'logs-next', onclick: () => logPage(el, q, data.nextCursor) }, 'Older') : null;
  const first = cursor ? h('button', { type: 'button', class: 'secondary', onclick: () => logPage(el, q, '') }, 'Newest') : null;
  el.replaceChildren(rows, h('p', {}, first, ' ', more), detail);
}

// ---- health ----

async function healthPage() {
  const box = alertBox();
  const res = await api('GET', '/api/resilience');
  const cool = await api('GET', '/api/resilience/model-cooldowns').catch(() => ({ lockouts: [] }));
  const rl = await api('GET', '/api/rate-limits').catch(() => ({ connections: [] }));
  const cache = await api('GET', '/api/cache/stats').catch(() => null);
  const mon = await api('GET', '/api/monitoring/health').catch(() => null);
  const reset = (body, label, id) => h('button', { type: 'button', id, 'aria-label': label, onclick: ev => act(box, ev.target, async () => { await api('POST', '/api/resilience/reset', body); await healthPage(); }) }, 'Reset');
  const breakers = res.breakers || [];
  page('Health', box,
    mon ? h('section', { class: 'card', id: 'monitoring' }, h('div', { class: 'stats' },
      h('span', {}, `Status: ${mon.status}`), h('span', {}, `Providers configured: ${mon.configuredCount}`), h('span', {}, `Active: ${mon.activeCount}`),
      h('span', {}, `Open breakers: ${mon.openBreakers}`), h('span', {}, `Usage queued/dropped: ${mon.usageQueued}/${mon.usageDropped}`))) : null,
    h('h2', {}, 'Circuit breakers'),
    h('div', { id: 'breakers' }, table([['Provider', b => b.provider], ['State', b => h('span', { class: b.state === 'open' ? 'bad' : '' }, b.state)],
      ['Failures', b => b.consecutive_failures], ['Open until', b => fmtTime(b.open_until)], ['Last status', b => b.last_status],
      ['', b => reset({ provider: b.provider }, `Reset ${b.provider}`, `reset-${b.provider}`), 'actions']], breakers, 'All breakers closed: every provider is taking requests.')),
    h('p', {}, h('button', { type: 'button', class: 'secondary', id: 'reset-all', onclick: ev => act(box, ev.target, async () => { await api('POST', '/api/resilience/reset', { all: true }); await healthPage(); }) }, 'Reset all breakers, cooldowns and lockouts')),
    h('h2', {}, 'Connection cooldowns'),
    h('div', { id: 'cooldowns' }, table([['Connection', c => c.connection], ['Cooling', c => c.cooling ? h('span', { class: 'bad' }, `yes, ${Math.ceil((c.remaining_ms || 0) / 1000)} s`) : 'no'],
      ['Failures', c => c.consecutive_failures], ['Last status', c => c.last_status],
      ['', c => reset({ provider: c.provider }, `Reset ${c.connection}`), 'actions']], rl.connections || [], 'No connection is cooling down.')),
    h('h2', {}, 'Model lockouts'),
    table([['Provider', l => l.provider], ['Connection', l => l.connection], ['Model', l => l.model], ['Until', l => fmtTime(l.until)], ['Status', l => l.status],
      ['', l => h('button', { type: 'button', 'aria-label': `Clear lockout of ${l.model}`, onclick: ev => act(box, ev.target, async () => { await api('DELETE', '/api/resilience/model-cooldowns', { provider: l.provider, model: l.model }); await healthPage(); }) }, 'Clear'), 'actions']],
      cool.lockouts || [], cool.enabled ? 'No model is locked out.' : 'Model lockouts are off (Settings → resilience).'),
    h('h2', {}, 'Cache and idempotency'),
    cache ? h('section', { class: 'card', id: 'cache-stats' }, kv(cache),
      h('button', { type: 'button', class: 'danger', onclick: ev => act(box, ev.target, async () => { await api('DELETE', '/api/cache/stats'); await healthPage(); }) }, 'Clear cache')) : h('p', { class: 'empty' }, 'No cache configured.'));
}

// kv shows an object's numbers and strings as a two-column table.
function kv(obj) {
  const rows = [];
  const walk = (o, pre) => {
    for (const [k, v] of Object.entries(o || {})) {
      if (Array.isArray(v) && v.some(x => x && typeof x === 'object')) v.forEach((x, i) => walk(x, `${pre}${k} ${i + 1} · `));
      else if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, `${pre}${k} · `);
      else rows.push([pre + k, Array.isArray(v) ? (v.join(', ') || 'none') : String(v)]);
    }
  };
  walk(obj, '');
  return table([['Name', r => r[0]], ['Value', r => r[1]]], rows, 'Nothing to show.');
}

// ---- settings ----

async function settingsPage() {
  const rl = await api('GET', '/api/settings/require-login');
  const ret = await api('GET', '/api/settings/usage-retention').catch(() => null);
  const res = await api('GET', '/api/resilience');
  const backups = await api('GET', '/api/db-backups').catch(() => null);
  const lb = alertBox(), pb = alertBox(), rb = alertBox(), sb = alertBox(), bb = alertBox();
  const req = h('input', { type: 'checkbox', id: 'require-login', checked: rl.requireLogin });
  req.addEventListener('change', () => act(lb, null, () => api('PUT', '/api/settings/require-login', { requireLogin: req.checked })));
  const pw = h('form', { class: 'card', id: 'password-form' }, h('div', { class: 'row' },
    field('Current password', { name: 'current_password', type: 'password', autocomplete: 'current-password' }),
    field('New password', { name: 'password', type: 'password', autocomplete: 'new-password' }), h('button', { type: 'submit' }, 'Change password')), pb);
  pw.addEventListener('submit', ev => { ev.preventDefault(); act(pb, null, async () => { await api('POST', '/api/auth/password', formValues(pw)); boot(); }); });
  const retForm = h('form', { class: 'card', id: 'retention-form' }, h('div', { class: 'row' },
    ...Object.entries(ret || {}).filter(([, v]) => typeof v === 'number').map(([k, v]) => field(k, { name: k, type: 'number', value: String(v) })),
    h('button', { type: 'submit' }, 'Save retention')), rb);
  retForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const body = {}; for (const [k, v] of Object.entries(formValues(retForm))) body[k] = Number(v);
    act(rb, null, async () => { await api('PUT', '/api/settings/usage-retention', body); saved(rb); });
  });
  const s = res.settings || {};
  const resForm = h('form', { class: 'card', id: 'resilience-form' }, h('div', { class: 'row' },
    ...Object.entries(s).filter(([, v]) => typeof v === 'number').map(([k, v]) => field(k, { name: k, type: 'number', value: String(v) }))),
    h('div', { class: 'row' }, ...Object.entries(s).filter(([, v]) => typeof v === 'boolean').map(([k, v]) =>
      h('label', { class: 'inline', for: `res-${k}` }, h('input', { type: 'checkbox', id: `res-${k}`, 'data-bool': k, checked: v }), k))),
    h('p', {}, h('button', { type: 'submit' }, 'Save resilience settings')), sb);
  resForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const body = {}; for (const [k, v] of Object.entries(formValues(resForm))) body[k] = Number(v);
    for (const cb of resForm.querySelectorAll('input[data-bool]')) { body[cb.dataset.bool] = cb.checked; delete body[cb.name]; }
    act(sb, null, async () => { await api('PATCH', '/api/resilience', body); saved(sb); });
  });
  const blist = (backups && (backups.backups || backups)) || [];
  
  const fileIn = h('input', { type: 'file', id: 'import-file', accept: '.db,.sqlite,.json' });
  const importBtn = h('button', { type: 'button', class: 'secondary' }, 'Import');
  importBtn.addEventListener('click', () => act(bb, importBtn, async () => {
    const f = fileIn.files[0]; if (!f) throw new Error('Choose a file first.');
    const r = await fetch('/api/db-backups/import', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/octet-stream' }, body: f });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error(e.error?.message || `${r.status}`); }
    saved(bb, 'Imported.');
  }));
  page('Settings',
    h('section', { class: 'card' }, h('label', { for: 'require-login', class: 'inline' }, req, ' Require login for the dashboard and management API'), lb),
    h('h2', {}, 'Password'), pw,
    h('h2', {}, 'Usage retention'), ret ? retForm : h('p', { class: 'empty' }, 'Not available.'),
    h('h2', {}, 'Resilience'), resForm,
    h('h2', {}, 'Backups'),
    h('section', { class: 'card' },
      h('p', {}, h('button', { type: 'button', id: 'backup-create', onclick: ev => act(bb, ev.target, async () => { await api('PUT', '/api/db-backups', {}); settingsPage(); }) }, 'Create backup'), ' ',
        h('a', { href: '/api/db-backups/export', download: '' }, 'Download the database')),
      Array.isArray(blist) ? table([['Backup', b => b.id], ['Kind', b => b.kind], ['Created', b => fmtTime(b.created_at)], ['Size', b => `${Math.round((b.size || 0) / 1024)} KB`],
        ['', b => h('span', {},
          h('button', { type: 'button', class: 'secondary', 'aria-label': `Restore ${b.id}`, onclick: ev => act(bb, ev.target, async () => { if (confirm('Restore this backup? The current state is replaced.')) { await api('POST', '/api/db-backups', { id: b.id }); saved(bb, 'Restored.'); } }) }, 'Restore'),
          h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${b.id}`, onclick: ev => act(bb, ev.target, async () => { await api('DELETE', `/api/db-backups/${encodeURIComponent(b.id)}`); settingsPage(); }) }, 'Delete')), 'actions']],
      blist, 'No backups yet: create one above.') : null,
      h('div', { class: 'row' }, h('label', { for: 'import-file' }, 'Import a backup file', fileIn), importBtn), bb));
}

boot();
