// The OmniRoute dashboard: a client of the management API (/api/...) and,
// in the playground, of the gateway's OpenAI endpoint (/v1/...), on the
// shared look (/dashboard/ui/: base.css, theme.js, ui.js). This module
// starts it: first-run setup or login when needed, then the layout and
// the router; each page is its own module under pages/, loaded when first
// opened.
import { h, field, layout, route, navigate } from "/dashboard/ui/ui.js";
import { BASE, call, act, feedback, values } from "./lib.js";

const pages = [
  { name: "providers", title: "Providers" },
  { name: "keys", title: "Keys" },
  { name: "routing", title: "Routing" },
  { name: "playground", title: "Playground" },
  { name: "usage", title: "Usage" },
  { name: "health", title: "Health" },
  { name: "settings", title: "Settings" },
];

async function boot() {
  let s;
  try {
    s = await call("GET", "/api/settings/require-login");
  } catch (e) {
    document.body.append(h("main", { class: "center", id: "main" }, h("div", { class: "error", role: "alert" }, e.message)));
    return;
  }
  if (s.setupRequired) return setupScreen();
  if (s.requireLogin && !s.loggedIn) return loginScreen();
  start(s.requireLogin);
}

// screen is a page without navigation (setup, login) in the shared look.
function screen(title, intro, form) {
  document.body.append(h("main", { class: "center", id: "main" },
    h("section", { class: "card narrow" }, h("h1", null, title), intro ? h("p", { class: "muted" }, intro) : null, form)));
  document.title = `${title} · OmniRoute`;
  form.querySelector("input").focus();
}

// After setup or login the dashboard starts where the user was, without
// reloading the page.
const restart = () => {
  const q = new URLSearchParams(location.search);
  q.delete("changed");
  history.replaceState(null, "", (location.pathname === BASE + "/" ? BASE + "/providers" : location.pathname) + (q.size ? `?${q}` : ""));
  document.body.replaceChildren();
  boot();
};

function setupScreen() {
  const fb = feedback();
  const submit = h("button", { type: "submit", class: "primary", id: "setup-submit" }, "Set password");
  const form = h("form", { id: "setup-form" },
    field("Setup token", h("input", { name: "token", id: "setup-token", required: true, autocomplete: "off" }), "Printed once in the gateway's log: setup_token=omrs_…"),
    field("New password", h("input", { name: "password", id: "setup-password", type: "password", required: true, minlength: 8, autocomplete: "new-password" }), "8 characters or more."),
    h("div", { class: "form-actions" }, submit), fb);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, submit, async () => { await call("POST", "/api/auth/setup", values(form)); restart(); });
  });
  screen("Set up OmniRoute", "First run: choose the password of this dashboard and its management API.", form);
}

function loginScreen() {
  const fb = feedback();
  const submit = h("button", { type: "submit", class: "primary", id: "login-submit" }, "Log in");
  const form = h("form", { id: "login-form" },
    field("Password", h("input", { name: "password", id: "login-password", type: "password", required: true, autocomplete: "current-password" })),
    h("div", { class: "form-actions" }, submit), fb);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    act(fb, submit, async () => { await call("POST", "/api/auth/login", values(form)); restart(); });
  });
  if (new URLSearchParams(location.search).get("changed") === "password") {
    form.prepend(h("div", { class: "notice ok", role: "status" }, "Password changed: every session has ended. Log in with the new one."));
  }
  screen("Log in to OmniRoute", "The dashboard password (set at first run, or INITIAL_PASSWORD).", form);
}

function start(requireLogin) {
  const logout = h("button", { type: "button", id: "logout", hidden: !requireLogin }, "Log out");
  logout.addEventListener("click", async () => {
    try { await call("POST", "/api/auth/logout"); } catch { /* the session is gone either way */ }
    location.assign(BASE + "/");
  });
  const ui = layout({
    brand: h("a", { class: "brand", href: BASE + "/providers" }, h("img", { src: BASE + "/ui/favicon.svg", alt: "" }), "OmniRoute"),
    links: pages.map(p => ({ href: `${BASE}/${p.name}`, label: p.title })),
    actions: [logout],
  });
  for (const a of ui.nav.querySelectorAll("a")) a.id = "nav-" + a.pathname.split("/").pop();
  const routes = pages.map(p => ({
    path: "/" + p.name,
    title: p.title,
    render: async ctx => (await import(`./pages/${p.name}.js`)).default(ctx),
  }));
  routes.push({ path: "/", render: () => { setTimeout(() => navigate("/providers", { replace: true })); return []; } });
  route(routes, { base: BASE, mount: ui.main, title: "OmniRoute", onRoute: path => ui.setActive(BASE + path) });
}

boot();
