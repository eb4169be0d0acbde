package api_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

func (f *apiFx) names(c *client.Client, vn string) (wire.DNSZone, map[string]wire.DNSRecord) {
	f.t.Helper()
	z, _, _, err := c.Names(f.ctx, vn, "", 0)
	if err != nil {
		f.t.Fatalf("names of %s: %v", vn, err)
	}
	byID := map[string]wire.DNSRecord{}
	for _, r := range z.Records {
		byID[r.DeviceID] = r
	}
	return z, byID
}

// Every member has <device>.<network>.<suffix>: derived from the names,
// unique per network in join order, editable, and the suffix is the
// operator's.
func TestNames(t *testing.T) {
	f := newAPIFx(t, apiConfig(func(c *config.Config) { c.DNSSuffix = "mesh.example" }))
	_, c := f.user(config.PlanFree)
	n := f.network(c, "Home Lab", "")
	if n.DNSName != "home-lab.mesh.example" {
		t.Fatalf("network zone = %q", n.DNSName)
	}
	a := f.register(c, "hw-a")
	b := f.register(c, "hw-b")
	if _, err := c.RenameDevice(f.ctx, a.ID, "Robot Arm #1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RenameDevice(f.ctx, b.ID, "robot-arm 1"); err != nil {
		t.Fatal(err)
	}
	ja := f.join(c, n.ID, a.ID)
	f.join(c, n.ID, b.ID)
	z, by := f.names(c, n.ID)
	if z.Zone != "home-lab.mesh.example" || len(z.Records) != 2 {
		t.Fatalf("zone %+v", z)
	}
	if by[a.ID].Name != "robot-arm-1.home-lab.mesh.example" || by[a.ID].VirtualIP != ja.VirtualIP || by[a.ID].VirtualIPv6 != ja.VirtualIPv6 {
		t.Fatalf("first member's record %+v (join %s %s)", by[a.ID], ja.VirtualIP, ja.VirtualIPv6)
	}
	if by[b.ID].Name != "robot-arm-1-2.home-lab.mesh.example" {
		t.Fatalf("the later member with the same derived label: %+v", by[b.ID])
	}
	ms, err := c.Members(f.ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.DNSName != by[m.DeviceID].Name {
			t.Fatalf("member list names %s %q, dns endpoint %q", m.DeviceID, m.DNSName, by[m.DeviceID].Name)
		}
	}

	// An explicit label: claimed first, the derived one moves aside.
	if _, err := c.SetDeviceDNSName(f.ctx, b.ID, "Arm"); err != nil {
		t.Fatal(err)
	}
	if _, by = f.names(c, n.ID); by[b.ID].Name != "arm.home-lab.mesh.example" || by[a.ID].Name != "robot-arm-1.home-lab.mesh.example" {
		t.Fatalf("after setting b's label: %+v", by)
	}
	// Taken by another member: 409; malformed: 400.
	if _, err := c.SetDeviceDNSName(f.ctx, a.ID, "arm"); client.StatusOf(err) != http.StatusConflict {
		t.Fatalf("a label another member holds: %v", err)
	}
	for _, bad := range []string{"-x", "a_b", "ünï", strings.Repeat("a", 57), "a.b"} {
		if _, err := c.SetDeviceDNSName(f.ctx, a.ID, bad); client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("label %q: %v", bad, err)
		}
	}
	// "" derives it again.
	if _, err := c.SetDeviceDNSName(f.ctx, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, by = f.names(c, n.ID); by[b.ID].Name != "robot-arm-1-2.home-lab.mesh.example" {
		t.Fatalf("after clearing b's label: %+v", by[b.ID])
	}

	// The network's label: derived, unique per owner, editable.
	n2 := f.network(c, "home lab!", "")
	if n1, _ := c.Network(f.ctx, n.ID); n2.DNSName == n1.DNSName ||
		(n2.DNSName != "home-lab-2.mesh.example" && n1.DNSName != "home-lab-2.mesh.example") {
		// Created in the same millisecond (the test clock), the order
		// falls to the ids: either may be the second.
		t.Fatalf("two networks with the same derived label: %q and %q", n1.DNSName, n2.DNSName)
	}
	label := "lab"
	got, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{DNSName: &label})
	if err != nil || got.DNSName != "lab.mesh.example" {
		t.Fatalf("set network label: %+v %v", got, err)
	}
	bad := "no.dots"
	if _, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{DNSName: &bad}); client.StatusOf(err) != http.StatusBadRequest {
		t.Fatalf("a network label with a dot: %v", err)
	}
	if z, _ = f.names(c, n.ID); z.Zone != "lab.mesh.example" {
		t.Fatalf("zone after the label changed: %q", z.Zone)
	}

	// Another user sees nothing of it.
	_, other := f.user(config.PlanFree)
	if _, _, _, err := other.Names(f.ctx, n.ID, "", 0); client.StatusOf(err) != http.StatusForbidden && client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("another user's names: %v", err)
	}
}

// A long poll answers as soon as the names change (a rename of a member
// here), 304 when the wait ends without a change, and bad waits are 400.
func TestNamesLongPoll(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user(config.PlanFree)
	n := f.network(c, "home", "")
	a := f.register(c, "hw-a")
	f.join(c, n.ID, a.ID)
	_, tag, changed, err := c.Names(f.ctx, n.ID, "", 0)
	if err != nil || !changed || tag == "" {
		t.Fatalf("first read: %q %v %v", tag, changed, err)
	}
	// Unchanged: 304 after the wait.
	start := time.Now()
	if _, tag2, changed, err := c.Names(f.ctx, n.ID, tag, time.Second); err != nil || changed || tag2 != tag {
		t.Fatalf("unchanged long poll: changed=%v %v", changed, err)
	}
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("the long poll answered after %v, before its wait of 1 s", time.Since(start))
	}

	type answer struct {
		z       wire.DNSZone
		changed bool
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		z, _, changed, err := c.Names(f.ctx, n.ID, tag, 30*time.Second)
		done <- answer{z, changed, err}
	}()
	time.Sleep(200 * time.Millisecond) // the poll is held
	if _, err := c.RenameDevice(f.ctx, a.ID, "kitchen"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got.err != nil || !got.changed || len(got.z.Records) != 1 || got.z.Records[0].Name != "kitchen.home.omni.internal" {
			t.Fatalf("woken long poll: %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll was not answered within 5 s of the rename")
	}

	for _, q := range []string{"wait=-1", "wait=61", "wait=x"} {
		req, _ := http.NewRequest("GET", f.env.URL+"/api/v2/virtual-networks/"+n.ID+"/dns?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+apiToken(c))
		req.Header.Set("If-None-Match", tag)
		resp, err := f.env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s", q, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// A holder of an account cannot hold more than 64 long polls: of 65 at
// once, one is 429 too_many_waits and 64 are held; the slots come back
// when the polls end.
func TestNamesLongPollCap(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user(config.PlanFree)
	n := f.network(c, "home", "")
	_, tag, _, err := c.Names(f.ctx, n.ID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused, held := 0, 0
	for range 65 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, _, _, err := c.Names(f.ctx, n.ID, tag, 3*time.Second)
			mu.Lock()
			defer mu.Unlock()
			var ae *client.APIError
			switch {
			case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests && ae.Code == "too_many_waits":
				refused++
			case err == nil && time.Since(start) >= 2500*time.Millisecond:
				held++
			default:
				t.Errorf("a long poll: %v after %v", err, time.Since(start))
			}
		}()
	}
	wg.Wait()
	if refused != 1 || held != 64 {
		t.Fatalf("65 long polls at once: %d refused, %d held; want 1 and 64", refused, held)
	}
	if _, _, _, err := c.Names(f.ctx, n.ID, tag, time.Second); err != nil {
		t.Fatalf("a long poll after the others ended: %v", err)
	}
}
