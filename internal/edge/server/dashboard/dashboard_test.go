package dashboard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv/browser"
)

const password = "correct horse battery" // edgetest.NewUser's

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func login(p *browser.Page, url, email string) {
	p.Navigate(url + "/")
	p.SetValue("#email", email)
	p.SetValue("#password", password)
	p.Click("#login")
	p.WaitVisible("#create-network")
}

// The flow of a user: log in, create a network, watch a device
// registered through the API appear and go online after a heartbeat
// without reloading, let it be an exit node, create a security key (and
// log in with it), revoke it, log out.
func TestDashboardFlow(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ctx := context.Background()
	b := browser.New(t)
	p := b.Page(t, 1280, 800)

	p.Navigate(env.URL + "/")
	p.WaitVisible("#login")
	// A wrong password: the API's message next to the form.
	p.AllowStatus(401, "/api/v2/auth/dashboard/login")
	p.SetValue("#email", u.Email)
	p.SetValue("#password", "not the password")
	p.Click("#login")
	p.WaitText("main [role=alert]", "wrong email or password")
	p.Screenshot("login")
	login(p, env.URL, u.Email)
	p.WaitText("main", "No networks yet")
	p.Screenshot("networks-empty")

	p.SetValue("#net-name", "home")
	p.Click("#create-network")
	p.WaitText("h1", "Network home")
	p.WaitText("main", "No devices in this network yet")

	// A device registers and joins through the API; the open page shows
	// it, offline, then online once it sends a heartbeat.
	c := env.Client(u)
	nets, err := c.Networks(ctx)
	if err != nil || len(nets) != 1 {
		t.Fatalf("networks %+v, %v; want the one created in the browser", nets, err)
	}
	dev, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "robot-1", HardwareUUID: "hw-robot-1", Platform: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, nets[0].ID, dev.ID); err != nil {
		t.Fatal(err)
	}
	p.WaitText("main", "robot-1")
	p.WaitText("main", "offline")
	if _, err := c.Heartbeat(ctx, "hw-robot-1", true); err != nil {
		t.Fatal(err)
	}
	p.WaitVisible("td .badge.online")
	p.WaitText("main", "device consents")
	p.WaitText("main", nets[0].IPv6Range)
	p.Screenshot("network")

	// The open page polls with If-None-Match: an unchanged member list
	// comes back as a 304 without a body.
	eventually(t, "a 304 for the members list", func() bool {
		n, _ := p.Eval(`performance.getEntriesByType("resource").filter(e => e.name.endsWith("/devices") &&
			e.name.includes("/virtual-networks/") && e.responseStatus === 304).length`).(float64)
		return n > 0
	})

	// The admin lets it be the network's exit node.
	p.Click(`input[data-exit="` + dev.ID + `"]`)
	eventually(t, "exit node toggled", func() bool {
		ms, err := c.Members(ctx, nets[0].ID)
		return err == nil && len(ms) == 1 && ms[0].IsExitNode
	})

	// A second member routes its internet traffic through it: its select
	// offers robot-1 (allowed), robot-1's offers only "none".
	dev2, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "robot-2", HardwareUUID: "hw-robot-2", Platform: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, nets[0].ID, dev2.ID); err != nil {
		t.Fatal(err)
	}
	sel2 := `select[data-uses-exit="` + dev2.ID + `"]`
	p.WaitVisible(sel2)
	options := func(sel string) string {
		v, _ := p.Eval(`[...document.querySelector(` + "`" + sel + "`" + `).options].map(o => o.value || "none").join(",")`).(string)
		return v
	}
	if got := options(sel2); got != "none,"+dev.ID {
		t.Fatalf("robot-2's exit choices: %q, want none and robot-1", got)
	}
	if got := options(`select[data-uses-exit="` + dev.ID + `"]`); got != "none" {
		t.Fatalf("robot-1's exit choices: %q, want only none (robot-2 is not allowed, robot-1 is itself)", got)
	}
	p.SetValue(sel2, dev.ID)
	exitOf := func(id string) string {
		ms, err := c.Members(ctx, nets[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.DeviceID == id && m.ExitNode != nil {
				return *m.ExitNode
			}
		}
		return ""
	}
	eventually(t, "exit node chosen", func() bool { return exitOf(dev2.ID) == dev.ID })
	// robot-1 is allowed, consents (its heartbeat said so) and is online.
	p.WaitText(`[data-exit-state="`+dev2.ID+`"]`, "in effect")
	p.Screenshot("network-exit-node")

	// The API's refusal is shown next to the select: a choice that is no
	// longer a member (as when it left after the page was drawn).
	p.AllowStatus(400, "/api/v2/virtual-networks/")
	p.Eval(`(() => { const s = document.querySelector(` + "`" + sel2 + "`" + `); s.append(new Option("gone", "dev_gone"));
		s.value = "dev_gone"; s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
	p.WaitText("#uses-exit-error-"+dev2.ID, "not a member")
	if got := exitOf(dev2.ID); got != dev.ID {
		t.Fatalf("exit node after a refused choice: %q, want robot-1 still", got)
	}
	if v, _ := p.Eval(`document.querySelector(` + "`" + sel2 + "`" + `).value`).(string); v != dev.ID {
		t.Fatalf("select after a refused choice shows %q, want robot-1 again", v)
	}
	// "none" clears it (and the error).
	p.SetValue(sel2, "")
	eventually(t, "exit node cleared", func() bool { return exitOf(dev2.ID) == "" })
	p.WaitGone("#uses-exit-error-" + dev2.ID + ":not([hidden])")

	p.Click(`nav a[href="/devices"]`)
	p.WaitText("h1", "Devices")
	p.WaitText("main", "robot-1")
	p.WaitText("main", "home")
	p.Screenshot("devices")

	// A security key: shown once, works, then revoked.
	p.Click(`nav a[href="/keys"]`)
	p.WaitText("h1", "Security keys")
	p.SetValue("#key-name", "ci-runner")
	p.Click("#create-key")
	p.WaitVisible("#new-key")
	raw := p.Text("#new-key")
	if !strings.HasPrefix(raw, "oek_") {
		t.Fatalf("shown key %q", raw)
	}
	if _, err := client.New(env.URL, env.Server.Client()).LoginSecurityKey(ctx, raw); err != nil {
		t.Fatalf("the new key does not log in: %v", err)
	}
	p.WaitText("main", "ci-runner")
	p.WaitText("main", "this browser")
	p.Screenshot("keys")
	keys, err := env.Service.ListSecurityKeys(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, k := range keys {
		if k.Name == "ci-runner" {
			id = k.ID
		}
	}
	p.Click(`button[data-revoke-key="` + id + `"]`)
	p.Click(`dialog button[value=ok]`)
	p.WaitGone(`button[data-revoke-key="` + id + `"]`)
	if _, err := client.New(env.URL, env.Server.Client()).LoginSecurityKey(ctx, raw); client.StatusOf(err) != 401 {
		t.Fatalf("revoked key logs in: %v", err)
	}

	p.Click("#logout")
	p.WaitVisible("#login")
	p.WaitText("main", "logged out")
}

// Every page, with data on it, at a phone's width and a desktop's: no
// console error, no failed request, nothing wider than the viewport.
func TestDashboardPagesFit(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ctx := context.Background()
	c := env.Client(u)
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "warehouse-robots", IPRange: "100.77.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, name := range []string{"forklift-controller-with-a-long-name", "gateway"} {
		hw := "hw-" + name
		d, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: name, HardwareUUID: hw, Platform: "linux"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctx, n.ID, d.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Heartbeat(ctx, hw, i == 1); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	// The gateway is the network's exit node and the forklift uses it.
	yes := true
	if _, err := c.UpdateMember(ctx, n.ID, ids[1], wire.UpdateMemberRequest{IsExitNode: &yes}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateMember(ctx, n.ID, ids[0], wire.UpdateMemberRequest{ExitNode: wire.Some(ids[1])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUserServer(ctx, wire.UserServerRequest{Name: "frankfurt", Host: "nucleus.example.com:7787", Country: "DE"}); err != nil {
		t.Fatal(err)
	}

	b := browser.New(t)
	for _, w := range [][2]int{{390, 844}, {1280, 800}} {
		p := b.Page(t, w[0], w[1])
		check := func(name string) {
			t.Helper()
			p.Screenshot(name)
			if o := p.Overflow(); len(o) > 0 {
				t.Errorf("%s at %dpx: wider than the viewport: %v", name, w[0], o)
			}
		}
		p.Navigate(env.URL + "/")
		p.WaitVisible("#login")
		check("login")
		login(p, env.URL, u.Email)
		p.WaitText("main", "warehouse-robots")
		check("networks")
		p.Navigate(env.URL + "/networks/" + n.ID)
		p.WaitText("main", "forklift-controller-with-a-long-name")
		check("network")
		p.Navigate(env.URL + "/devices")
		p.WaitText("main", "gateway")
		check("devices")
		p.Navigate(env.URL + "/keys")
		p.WaitText("main", "this browser")
		check("keys")
		p.Navigate(env.URL + "/servers")
		p.WaitText("main", "frankfurt")
		check("servers")
		p.ColorScheme("dark")
		p.Navigate(env.URL + "/networks/" + n.ID)
		p.WaitText("main", "gateway")
		check("network-dark")
		p.ColorScheme("")
		p.Navigate(env.URL + "/networks/" + n.ID + "/nothing")
		p.WaitText("h1", "Not found")

		// The browser-login pages a device's login link opens.
		s, err := client.New(env.URL, env.Server.Client()).StartSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Navigate(env.URL + "/login?session=" + s.UUID)
		p.WaitVisible("#password")
		check("device-login")
		p.SetValue("#email", u.Email)
		p.SetValue("#password", password)
		p.Click("button[type=submit]")
		p.WaitText("h1", "Approve this device?")
		check("device-approve")
	}
}

// The rest of what a user manages: rename a device, add and edit a
// server of their own and assign it to a network, remove a member, revoke
// another session, delete a device and a network — each checked through
// the API.
func TestDashboardManage(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ctx := context.Background()
	c := env.Client(u)
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	var devs []wire.Device
	for _, name := range []string{"printer", "camera"} {
		d, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: name, HardwareUUID: "hw-" + name, Platform: "linux"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctx, n.ID, d.ID); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	b := browser.New(t)
	p := b.Page(t, 1280, 800)
	login(p, env.URL, u.Email)

	// Rename.
	p.Navigate(env.URL + "/devices")
	p.WaitText("main", "printer")
	p.Click(`button[data-rename="` + devs[0].ID + `"]`)
	p.SetValue("#rename-name", "office-printer")
	p.Click("#rename-save")
	p.WaitText("main", "office-printer")
	if d, err := c.Device(ctx, devs[0].ID); err != nil || d.Name != "office-printer" {
		t.Fatalf("renamed device: %+v, %v", d, err)
	}

	// A server of one's own: add, edit, assign.
	p.Navigate(env.URL + "/servers")
	p.WaitText("main", "No servers of your own")
	p.SetValue("#srv-name", "home-nucleus")
	p.SetValue("#srv-host", "nucleus.example.com:7787")
	p.SetValue("#srv-country", "DE")
	p.Click("#save-server")
	p.WaitText("main", "home-nucleus")
	srvs, err := c.UserServers(ctx)
	if err != nil || len(srvs) != 1 {
		t.Fatalf("servers %+v, %v", srvs, err)
	}
	p.Click(`button[data-edit-server="` + srvs[0].ID + `"]`)
	p.SetValue("#srv-country", "NL")
	p.Click("#save-server")
	p.WaitText("main", "NL")
	p.Screenshot("servers")
	p.Navigate(env.URL + "/networks/" + n.ID)
	p.WaitText("main", "camera")
	p.SetValue("#net-server", srvs[0].ID)
	p.Click("#assign-server")
	eventually(t, "server assigned", func() bool {
		got, err := c.Network(ctx, n.ID)
		return err == nil && got.Server.ID == srvs[0].ID
	})

	// Remove a member.
	p.WaitText("main", "home-nucleus")
	p.Click(`button[data-remove="` + devs[1].ID + `"]`)
	p.Click(`dialog button[value=ok]`)
	eventually(t, "member removed", func() bool {
		ms, err := c.Members(ctx, n.ID)
		return err == nil && len(ms) == 1
	})
	// It is offered again under "Add a device"; add it back.
	eventually(t, "removed device offered", func() bool {
		v, _ := p.Eval(`!!document.querySelector('#join-device option[value="` + devs[1].ID + `"]')`).(bool)
		return v
	})
	p.SetValue("#join-device", devs[1].ID)
	p.Click("#join-network")
	eventually(t, "member added back", func() bool {
		ms, err := c.Members(ctx, n.ID)
		return err == nil && len(ms) == 2
	})
	p.WaitText("#join-device", "All your devices are members")

	// Revoke another session (the security-key login of c).
	tok, _ := c.Tokens()
	if _, err := env.Service.Authenticate(tok); err != nil {
		t.Fatal(err)
	}
	p.Navigate(env.URL + "/keys")
	p.WaitText("main", "security_key")
	p.Click(`button[data-revoke-session]:not([data-current])`)
	p.Click(`dialog button[value=ok]`)
	eventually(t, "session revoked", func() bool {
		_, err := env.Service.Authenticate(tok)
		return err != nil
	})

	// Delete a device, then the network.
	p.Navigate(env.URL + "/devices")
	p.WaitText("main", "camera")
	p.Click(`button[data-delete-device="` + devs[1].ID + `"]`)
	p.Click(`dialog button[value=ok]`)
	p.WaitGone(`button[data-delete-device="` + devs[1].ID + `"]`)
	p.Navigate(env.URL + "/networks/" + n.ID)
	p.WaitText("main", "office-printer")
	p.Click("#delete-network")
	p.Click(`dialog button[value=ok]`)
	p.WaitText("main", "No networks yet")
	if nets, err := c.Networks(ctx); err != nil || len(nets) != 0 {
		t.Fatalf("networks after delete: %+v, %v", nets, err)
	}
}

// The network page shows each member's DNS name and the subnet routes it
// advertises; the owner approves one with its checkbox, and the page says
// which routes are in use.
func TestDashboardNamesAndRoutes(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ctx := context.Background()
	c := env.Client(u)
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "Factory Floor"})
	if err != nil {
		t.Fatal(err)
	}
	routes := []string{"10.1.0.0/24", "fd00:1::/64"}
	r, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "Cell Router", HardwareUUID: "hw-r", Platform: "linux", AdvertisedRoutes: &routes})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, n.ID, r.ID); err != nil {
		t.Fatal(err)
	}
	b := browser.New(t)
	p := b.Page(t, 1280, 800)
	login(p, env.URL, u.Email)
	p.Navigate(env.URL + "/networks/" + n.ID)
	p.WaitText("main", "cell-router.factory-floor.omni.internal")
	p.WaitText("main", "awaiting approval")
	if txt := p.Text("main"); !strings.Contains(txt, "factory-floor.omni.internal") || !strings.Contains(txt, "fd00:1::/64") {
		t.Fatalf("the network page lacks the zone or a route:\n%s", txt)
	}
	p.Click(`input[data-route="10.1.0.0/24"]`)
	eventually(t, "the route approved", func() bool {
		got, err := c.MemberRoutes(ctx, n.ID, r.ID)
		return err == nil && len(got.Enabled) == 1 && got.Enabled[0] == "10.1.0.0/24"
	})
	p.WaitText("main", "in use")
	p.Screenshot("routes")
}
