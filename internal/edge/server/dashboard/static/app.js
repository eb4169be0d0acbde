// OmniEdge dashboard: a client of the public JSON API (docs/edge-api.md),
// authenticated by the HttpOnly session cookie POST
// /api/v2/auth/dashboard/login sets.

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let poll = null; // the current page's refresh timer

// h builds an element: h('button', {class: 'x', onclick: f}, 'text', child).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the JSON API; an error carries the body's message.
async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: {} };
  if (method !== 'GET' && method !== 'DELETE') {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body || {});
  }
  const res = await fetch(path, opt);
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) {
    const msg = (data && data.error && data.error.message) || (res.status + ' ' + res.statusText);
    if (res.status === 401 && !path.startsWith('/api/v2/auth/')) { showLogin('Your session has ended. Log in again.'); }
    throw new APIError(res.status, msg);
  }
  return data;
}

// act runs f, showing its error in the alert element next to the control.
async function act(alertEl, f) {
  alertEl.textContent = '';
  try { await f(); } catch (e) { if (!(e instanceof APIError && e.status === 401)) alertEl.textContent = e.message; }
}

const alertBox = () => h('p', { class: 'err', role: 'alert' });

function when(t) {
  if (!t) return 'never';
  const d = new Date(t);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return d.toLocaleString();
}

const online = (on) => h('span', { class: 'badge ' + (on ? 'on' : 'off') }, on ? 'online' : 'offline');

// table renders rows; cols are [heading, row => cell content].
function table(cols, rows, label) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'stack', 'aria-label': label },
      h('thead', {}, h('tr', {}, cols.map(([t]) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, cols.map(([t, f, cls]) => h('td', { 'data-label': t, class: cls || null }, f(r))))))));
}

function page(title, ...kids) {
  main.replaceChildren(h('h1', {}, title), ...kids);
  document.title = title + ' · OmniEdge';
}

// ---- session ----

function loggedIn() { return document.cookie.split(';').some((c) => c.trim().startsWith('omni_edge_session_present=')); }

function showLogin(msg) {
  stopPoll();
  nav.hidden = true;
  const err = alertBox();
  if (msg) err.textContent = msg;
  const email = h('input', { id: 'email', type: 'email', autocomplete: 'username', required: true });
  const pw = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', {
    onsubmit: (e) => {
      e.preventDefault();
      act(err, async () => {
        await api('POST', '/api/v2/auth/dashboard/login', { email: email.value, password: pw.value });
        nav.hidden = false;
        if (location.pathname === '/' || location.pathname === '') history.replaceState(null, '', '/networks');
        route();
      });
    },
  },
  h('label', { for: 'email' }, 'Email', email),
  h('label', { for: 'password' }, 'Password', pw),
  h('button', { type: 'submit', id: 'login' }, 'Log in'), err);
  main.replaceChildren(h('section', { class: 'card login' },
    h('h1', {}, 'Log in to OmniEdge'),
    h('p', { class: 'muted' }, 'Use the email and password of your account (an administrator creates it with omni edge admin user create).'),
    form));
  document.title = 'Log in · OmniEdge';
  email.focus();
}

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('POST', '/api/v2/auth/dashboard/logout'); } catch { /* over either way */ }
  history.pushState(null, '', '/');
  showLogin('You are logged out.');
});

// ---- router ----

function stopPoll() { if (poll) { clearInterval(poll); poll = null; } }

// live re-renders every 3 s while the page is shown.
function live(f) { stopPoll(); poll = setInterval(() => { f().catch(() => {}); }, 3000); }

const routes = [
  [/^\/(networks)?$/, networksPage],
  [/^\/networks\/([^/]+)$/, networkPage],
  [/^\/devices$/, devicesPage],
  [/^\/keys$/, keysPage],
  [/^\/servers$/, serversPage],
];

async function route() {
  stopPoll();
  if (!loggedIn()) { showLogin(); return; }
  nav.hidden = false;
  const path = location.pathname;
  for (const a of nav.querySelectorAll('a')) {
    const on = path === a.getAttribute('href') || path.startsWith(a.getAttribute('href') + '/') || (path === '/' && a.getAttribute('href') === '/networks');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  for (const [re, f] of routes) {
    const m = path.match(re);
    if (m) {
      try { await f(...m.slice(1)); } catch (e) {
        if (!(e instanceof APIError && e.status === 401)) page('Something went wrong', h('p', { role: 'alert', class: 'err' }, e.message));
      }
      return;
    }
  }
  page('Not found', h('p', {}, 'No such page. ', h('a', { href: '/networks' }, 'Go to your networks.')));
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (!a || a.origin !== location.origin || a.target || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  history.pushState(null, '', a.pathname);
  route();
  main.focus();
});
window.addEventListener('popstate', route);

// ---- networks ----

async function networksPage() {
  const err = alertBox();
  const name = h('input', { id: 'net-name', required: true, placeholder: 'home' });
  const range = h('input', { id: 'net-range', placeholder: 'e.g. 100.77.0.0/24 (optional)' });
  const list = h('div');
  const form = h('form', {
    class: 'row',
    onsubmit: (e) => {
      e.preventDefault();
      act(err, async () => {
        const body = { name: name.value.trim() };
        if (range.value.trim()) body.ip_range = range.value.trim();
        const n = await api('POST', '/api/v2/virtual-networks', body);
        name.value = ''; range.value = '';
        history.pushState(null, '', '/networks/' + encodeURIComponent(n.id));
        route();
      });
    },
  }, h('label', { for: 'net-name' }, 'Name', name), h('label', { for: 'net-range' }, 'IPv4 range', range),
  h('button', { type: 'submit', id: 'create-network' }, 'Create network'));
  page('Networks', h('section', { class: 'card' }, h('h2', {}, 'New network'), form, err), list);
  const nets = await api('GET', '/api/v2/virtual-networks');
  if (!nets.length) {
    list.replaceChildren(h('p', { class: 'muted' }, 'No networks yet. Create one above, then join devices to it with omni edge join.'));
    return;
  }
  list.replaceChildren(h('section', { class: 'card' }, table([
    ['Name', (n) => h('a', { href: '/networks/' + encodeURIComponent(n.id) }, n.name)],
    ['IPv4 range', (n) => h('code', {}, n.ip_range)],
    ['IPv6 prefix', (n) => h('code', {}, n.ipv6_range)],
    ['Nucleus', (n) => n.server.name || n.server.host],
  ], nets, 'Networks')));
}

async function networkPage(id) {
  const net = await api('GET', '/api/v2/virtual-networks/' + encodeURIComponent(id));
  const [servers, devices] = await Promise.all([api('GET', '/api/v2/user-servers'), api('GET', '/api/v2/devices')]);
  const netErr = alertBox();
  const members = h('div');
  const joinErr = alertBox();
  const serverSel = h('select', { id: 'net-server' },
    h('option', { value: '' }, 'Built-in nucleus'),
    servers.map((s) => h('option', { value: s.id, selected: s.id === (net.server.id || '') }, s.name + ' (' + s.host + ')')));
  const devSel = h('select', { id: 'join-device' });
  page('Network ' + net.name,
    h('section', { class: 'card' },
      h('dl', { class: 'kv' },
        h('dt', {}, 'ID'), h('dd', {}, h('code', {}, net.id)),
        h('dt', {}, 'IPv4 range'), h('dd', {}, h('code', {}, net.ip_range)),
        h('dt', {}, 'IPv6 prefix'), h('dd', {}, h('code', {}, net.ipv6_range)),
        h('dt', {}, 'Nucleus'), h('dd', {}, net.server.name + ' ' , h('code', {}, net.server.host))),
      h('form', {
        class: 'row',
        onsubmit: (e) => {
          e.preventDefault();
          act(netErr, async () => { await api('PATCH', '/api/v2/virtual-networks/' + encodeURIComponent(id), { server_id: serverSel.value || null }); route(); });
        },
      }, h('label', { for: 'net-server' }, 'Nucleus', serverSel), h('button', { type: 'submit', class: 'secondary' }, 'Assign nucleus'),
      h('button', {
        type: 'button', class: 'danger', id: 'delete-network',
        onclick: () => act(netErr, async () => {
          if (!confirm('Delete network ' + net.name + '? Its members are removed.')) return;
          await api('DELETE', '/api/v2/virtual-networks/' + encodeURIComponent(id));
          history.pushState(null, '', '/networks'); route();
        }),
      }, 'Delete network')), netErr),
    h('h2', {}, 'Members'), members,
    h('section', { class: 'card' }, h('h2', {}, 'Add a device'),
      h('form', {
        class: 'row',
        onsubmit: (e) => {
          e.preventDefault();
          act(joinErr, async () => { await api('POST', '/api/v2/virtual-networks/' + encodeURIComponent(id) + '/devices/' + encodeURIComponent(devSel.value)); await render(); });
        },
      }, h('label', { for: 'join-device' }, 'Device', devSel), h('button', { type: 'submit', class: 'secondary' }, 'Add to network')), joinErr));

  async function render() {
    const [ms, devs] = await Promise.all([api('GET', '/api/v2/virtual-networks/' + encodeURIComponent(id) + '/devices'), api('GET', '/api/v2/devices')]);
    const inNet = new Set(ms.map((m) => m.device_id));
    const others = devs.filter((d) => !inNet.has(d.id));
    const keep = devSel.value;
    devSel.replaceChildren(...(others.length ? others.map((d) => h('option', { value: d.id, selected: d.id === keep }, d.name))
      : [h('option', { value: '' }, 'All your devices are members')]));
    devSel.disabled = !others.length;
    const names = Object.fromEntries(ms.map((m) => [m.device_id, m.name]));
    if (!ms.length) {
      members.replaceChildren(h('p', { class: 'card muted' }, 'No devices in this network yet. Run omni edge join on a device, or add one of your devices below.'));
      return;
    }
    const rowErr = alertBox();
    members.replaceChildren(h('section', { class: 'card' }, table([
      ['Device', (m) => h('span', {}, h('strong', {}, m.name), ' ', h('span', { class: 'muted' }, m.platform))],
      ['Status', (m) => h('span', {}, online(m.online), ' ', h('span', { class: 'muted' }, when(m.last_seen)))],
      ['Addresses', (m) => h('span', {}, h('code', {}, m.virtual_ip), h('br'), h('code', {}, m.virtual_ip_v6))],
      ['Exit node', (m) => h('span', {},
        h('label', { class: 'check' }, h('input', {
          type: 'checkbox', checked: m.is_exit_node, 'data-exit': m.device_id,
          onchange: (e) => act(rowErr, async () => {
            await api('PATCH', '/api/v2/virtual-networks/' + encodeURIComponent(id) + '/devices/' + encodeURIComponent(m.device_id), { is_exit_node: e.target.checked });
            await render();
          }),
        }), 'Allowed by admin'),
        h('span', { class: 'muted' }, m.exit_node_consent ? 'device consents' : 'device has not consented'))],
      ['Uses exit node', (m) => m.exit_node ? (names[m.exit_node] || m.exit_node) : h('span', { class: 'muted' }, 'none')],
      ['', (m) => h('button', {
        type: 'button', class: 'danger',
        onclick: () => act(rowErr, async () => {
          if (!confirm('Remove ' + m.name + ' from ' + net.name + '?')) return;
          await api('DELETE', '/api/v2/virtual-networks/' + encodeURIComponent(id) + '/devices/' + encodeURIComponent(m.device_id));
          await render();
        }),
      }, 'Remove'), 'actions'],
    ], ms, 'Members'), rowErr));
  }
  await render();
  live(render);
}

// ---- devices ----

async function devicesPage() {
  const list = h('div');
  page('Devices', list);
  async function render() {
    const [devs, nets] = await Promise.all([api('GET', '/api/v2/devices'), api('GET', '/api/v2/virtual-networks')]);
    const memberships = {};
    const ms = await Promise.all(nets.map((n) => api('GET', '/api/v2/virtual-networks/' + encodeURIComponent(n.id) + '/devices')));
    nets.forEach((n, i) => { for (const m of ms[i]) (memberships[m.device_id] ||= []).push({ net: n, m }); });
    if (!devs.length) {
      list.replaceChildren(h('p', { class: 'card muted' }, 'No devices yet. Install OmniEdge on a device and run omni edge login, or use a security key from the Security keys page.'));
      return;
    }
    const err = alertBox();
    list.replaceChildren(h('section', { class: 'card' }, table([
      ['Name', (d) => h('strong', {}, d.name)],
      ['Status', (d) => h('span', {}, online(d.online), ' ', h('span', { class: 'muted' }, when(d.last_seen)))],
      ['OS', (d) => d.platform || h('span', { class: 'muted' }, 'unknown')],
      ['Networks and addresses', (d) => (memberships[d.id] || []).length
        ? h('span', {}, memberships[d.id].map(({ net, m }) => h('span', {}, h('a', { href: '/networks/' + encodeURIComponent(net.id) }, net.name), h('br'), h('code', {}, m.virtual_ip), h('br'), h('code', {}, m.virtual_ip_v6), h('br'))))
        : h('span', { class: 'muted' }, 'in no network')],
      ['', (d) => h('span', {},
        h('button', {
          type: 'button', class: 'secondary',
          onclick: () => act(err, async () => {
            const name = prompt('New name for ' + d.name, d.name);
            if (!name) return;
            await api('PATCH', '/api/v2/devices/' + encodeURIComponent(d.id), { name });
            await render();
          }),
        }, 'Rename'),
        h('button', {
          type: 'button', class: 'danger',
          onclick: () => act(err, async () => {
            if (!confirm('Delete device ' + d.name + '? It leaves every network.')) return;
            await api('DELETE', '/api/v2/devices/' + encodeURIComponent(d.id));
            await render();
          }),
        }, 'Delete')), 'actions'],
    ], devs, 'Devices'), err));
  }
  await render();
  live(render);
}

// ---- security keys and sessions ----

async function keysPage() {
  const err = alertBox();
  const name = h('input', { id: 'key-name', required: true, placeholder: 'laptop' });
  const shown = h('div');
  const keys = h('div');
  const sessions = h('div');
  page('Security keys',
    h('section', { class: 'card' }, h('h2', {}, 'New security key'),
      h('p', { class: 'muted' }, 'A security key logs a device in without a browser: omni edge login --security-key KEY.'),
      h('form', {
        class: 'row',
        onsubmit: (e) => {
          e.preventDefault();
          act(err, async () => {
            const k = await api('POST', '/api/v2/security-keys', { name: name.value.trim() });
            name.value = '';
            const code = h('code', { id: 'new-key' }, k.key);
            const copied = h('span', { class: 'muted', role: 'status' });
            shown.replaceChildren(h('div', { class: 'secret' },
              h('span', {}, 'Copy this key now; it is not shown again:'), code,
              h('button', {
                type: 'button', class: 'secondary',
                onclick: async () => {
                  try { await navigator.clipboard.writeText(k.key); copied.textContent = 'Copied.'; } catch { copied.textContent = 'Select the key and copy it.'; }
                },
              }, 'Copy'), copied));
            await renderKeys();
          });
        },
      }, h('label', { for: 'key-name' }, 'Name', name), h('button', { type: 'submit', id: 'create-key' }, 'Create key')), err, shown),
    h('h2', {}, 'Keys'), keys,
    h('h2', {}, 'Active sessions'), sessions);

  async function renderKeys() {
    const list = (await api('GET', '/api/v2/security-keys')).filter((k) => !k.revoked_at);
    if (!list.length) { keys.replaceChildren(h('p', { class: 'card muted' }, 'No security keys. Create one above to log in a device without a browser.')); return; }
    const kerr = alertBox();
    keys.replaceChildren(h('section', { class: 'card' }, table([
      ['Name', (k) => k.name],
      ['Created', (k) => when(k.created_at)],
      ['Last used', (k) => when(k.last_used_at)],
      ['Expires', (k) => k.expires_at ? new Date(k.expires_at).toLocaleString() : 'never'],
      ['', (k) => h('button', {
        type: 'button', class: 'danger', 'data-revoke-key': k.id,
        onclick: () => act(kerr, async () => { await api('DELETE', '/api/v2/security-keys/' + encodeURIComponent(k.id)); await renderKeys(); await renderSessions(); }),
      }, 'Revoke'), 'actions'],
    ], list, 'Security keys'), kerr));
  }
  async function renderSessions() {
    const list = await api('GET', '/api/v2/sessions');
    const serr = alertBox();
    sessions.replaceChildren(h('section', { class: 'card' }, table([
      ['Method', (s) => h('span', {}, s.method, s.current ? h('span', { class: 'badge on' }, 'this browser') : null)],
      ['From', (s) => h('span', {}, h('code', {}, s.client_ip || '?'), h('br'), h('span', { class: 'muted' }, s.user_agent || ''))],
      ['Started', (s) => when(s.created_at)],
      ['Last used', (s) => when(s.last_used_at)],
      ['', (s) => h('button', {
        type: 'button', class: 'danger',
        onclick: () => act(serr, async () => {
          await api('DELETE', '/api/v2/sessions/' + encodeURIComponent(s.id));
          if (s.current) { showLogin('You revoked this browser\'s session.'); return; }
          await renderSessions();
        }),
      }, 'Revoke'), 'actions'],
    ], list, 'Sessions'), serr));
  }
  await Promise.all([renderKeys(), renderSessions()]);
}

// ---- user servers ----

async function serversPage() {
  const err = alertBox();
  const f = { name: h('input', { id: 'srv-name', required: true }), host: h('input', { id: 'srv-host', required: true, placeholder: 'nucleus.example.com:7787' }),
    country: h('input', { id: 'srv-country', placeholder: 'DE (optional)' }), public_key: h('input', { id: 'srv-key', placeholder: 'base64 (optional)' }) };
  let editing = null;
  const submit = h('button', { type: 'submit', id: 'save-server' }, 'Add server');
  const list = h('div');
  const form = h('form', {
    class: 'row',
    onsubmit: (e) => {
      e.preventDefault();
      act(err, async () => {
        const body = { name: f.name.value.trim(), host: f.host.value.trim(), country: f.country.value.trim(), public_key: f.public_key.value.trim() };
        if (editing) await api('PATCH', '/api/v2/user-servers/' + encodeURIComponent(editing), body);
        else await api('POST', '/api/v2/user-servers', body);
        editing = null; submit.textContent = 'Add server';
        for (const i of Object.values(f)) i.value = '';
        await render();
      });
    },
  }, h('label', { for: 'srv-name' }, 'Name', f.name), h('label', { for: 'srv-host' }, 'Host:port', f.host),
  h('label', { for: 'srv-country' }, 'Country', f.country), h('label', { for: 'srv-key' }, 'Public key', f.public_key), submit);
  page('Servers',
    h('section', { class: 'card' }, h('h2', {}, 'Your own nucleus'),
      h('p', { class: 'muted' }, 'Run a nucleus on a server of yours, add it here, then assign it to a network on the network\'s page.'),
      form, err), list);
  async function render() {
    const servers = await api('GET', '/api/v2/user-servers');
    if (!servers.length) { list.replaceChildren(h('p', { class: 'card muted' }, 'No servers of your own. Networks use the built-in nucleus until you add one.')); return; }
    const rerr = alertBox();
    list.replaceChildren(h('section', { class: 'card' }, table([
      ['Name', (s) => s.name],
      ['Host', (s) => h('code', {}, s.host)],
      ['Country', (s) => s.country || ''],
      ['', (s) => h('span', {},
        h('button', { type: 'button', class: 'secondary', onclick: () => { editing = s.id; submit.textContent = 'Save server'; f.name.value = s.name; f.host.value = s.host; f.country.value = s.country || ''; f.public_key.value = s.public_key || ''; f.name.focus(); } }, 'Edit'),
        h('button', {
          type: 'button', class: 'danger',
          onclick: () => act(rerr, async () => { if (!confirm('Delete server ' + s.name + '?')) return; await api('DELETE', '/api/v2/user-servers/' + encodeURIComponent(s.id)); await render(); }),
        }, 'Delete')), 'actions'],
    ], servers, 'Servers'), rerr));
  }
  await render();
}

route();
