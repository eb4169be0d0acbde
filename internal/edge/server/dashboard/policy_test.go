package dashboard_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv/browser"
)

func newPublicKey(t *testing.T) string {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())
}

// The owner tags a device on the Devices page, writes the network's
// access policy on the network page (a document with a mistake is
// refused with its line and the stored policy stays; a save over
// someone else's newer version is refused rather than overwriting it),
// dry-runs it, sets the key lifetime and expires a device's key.
func TestDashboardPolicyTagsAndKeys(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ctx := context.Background()
	c := env.Client(u)
	n, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "Lab"})
	if err != nil {
		t.Fatal(err)
	}
	var laptop, robot wire.Device
	for _, d := range []struct {
		name string
		out  *wire.Device
	}{{"laptop", &laptop}, {"robot", &robot}} {
		if *d.out, err = c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: d.name, HardwareUUID: "hw-" + d.name, Platform: "linux",
			PublicKey: newPublicKey(t)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctx, n.ID, d.out.ID); err != nil {
			t.Fatal(err)
		}
	}

	b := browser.New(t)
	p := b.Page(t, 1280, 900)
	p.AllowStatus(http.StatusBadRequest, "/api/v2/virtual-networks/")
	p.AllowStatus(http.StatusPreconditionFailed, "/api/v2/virtual-networks/")
	login(p, env.URL, u.Email)

	// Tags on the Devices page.
	p.Navigate(env.URL + "/devices")
	p.Click(`button[data-rename="` + robot.ID + `"]`)
	p.SetValue("#edit-tags", "tag:server, eu")
	p.Click("#rename-save")
	p.WaitText("main", "tag:eu")
	if d, err := c.Device(ctx, robot.ID); err != nil || !slices.Equal(d.Tags, []string{"tag:eu", "tag:server"}) || d.Name != "robot" {
		t.Fatalf("robot after the edit: %+v %v", d, err)
	}

	// The policy editor.
	p.Navigate(env.URL + "/networks/" + n.ID)
	p.WaitText("#policy-state", "No policy")
	p.SetValue("#policy-doc", "{\n  \"rules\": [\n    {\"action\": \"accept\", \"src\": [\"laptop\"], \"dst\": [\"tag:server:ssh\"]}\n  ]\n}")
	p.Click("#policy-save")
	p.WaitText("main", "line 3")
	if got, err := c.Policy(ctx, n.ID); err != nil || got.Version != 0 {
		t.Fatalf("a refused policy was stored: %+v %v", got, err)
	}
	good := `{"rules": [{"action": "accept", "src": ["laptop"], "dst": ["tag:server:22"], "proto": "tcp"}]}`
	p.SetValue("#policy-doc", good)
	p.Click("#policy-save")
	p.WaitText("#policy-state", "Version 1")
	if got, err := c.Policy(ctx, n.ID); err != nil || got.Version != 1 || !bytes.Contains(got.Policy, []byte("tag:server:22")) {
		t.Fatalf("the saved policy: %+v %v", got, err)
	}

	// Dry run of what is in the editor.
	p.SetValue("#check-src", "laptop")
	p.SetValue("#check-dst", "robot")
	p.SetValue("#check-port", "22")
	p.Click("#check-run")
	p.WaitText("#check-verdict", "allowed")
	p.SetValue("#check-port", "80")
	p.Click("#check-run")
	p.WaitText("#check-verdict", "dropped")

	// Someone else saves meanwhile: this editor's save is refused, and
	// their version stays.
	if _, err := c.SetPolicy(ctx, n.ID, []byte(`{"rules": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`)); err != nil {
		t.Fatal(err)
	}
	p.SetValue("#policy-doc", good)
	p.Click("#policy-save")
	p.WaitText("main", "changed meanwhile")
	if got, err := c.Policy(ctx, n.ID); err != nil || got.Version != 2 || !bytes.Contains(got.Policy, []byte(`"*:*"`)) {
		t.Fatalf("a stale save overwrote the newer policy: %+v %v", got, err)
	}

	// Key lifetime.
	p.SetValue("#key-expiry", "720h")
	p.Click("#key-expiry-save")
	eventually(t, "the key lifetime set", func() bool {
		got, err := c.Network(ctx, n.ID)
		return err == nil && got.KeyExpiry == "720h"
	})
	p.WaitVisible("#policy-doc")
	p.Screenshot("policy")

	// Expire the laptop's key.
	p.Navigate(env.URL + "/devices")
	p.Click(`button[data-expire="` + laptop.ID + `"]`)
	p.Click(`dialog button[value=ok]`)
	eventually(t, "the laptop's key expired", func() bool {
		d, err := c.Device(ctx, laptop.ID)
		return err == nil && d.KeyExpiredAt != nil
	})
	p.WaitText("main", "Key expired")
	p.Screenshot("devices-tags")
}
