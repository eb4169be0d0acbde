package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// Device tags: the owner sets them (normalised, sorted, capped); the
// device list, the member list and the map carry them; a policy may name
// a tag once a member carries it and then applies to every member that
// does, and a map follower is woken by a tag change. Bad tags are 400s
// that change nothing; another user's device is a 403.
func TestDeviceTags(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	c, n, _, robot := f.lab(t)

	doc := `{"rules": [{"action": "accept", "src": ["laptop"], "dst": ["tag:ssh:22"], "proto": "tcp"}]}`
	if _, err := c.SetPolicy(f.ctx, n.ID, []byte(doc)); client.StatusOf(err) != http.StatusBadRequest ||
		!strings.Contains(err.Error(), "tag:ssh") {
		t.Fatalf("a policy naming a tag no member carries: %v, want a 400 naming it", err)
	}

	_, etag, _, err := c.Map(f.ctx, n.ID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan wire.NetMap, 1)
	go func() {
		m, _, _, err := c.Map(f.ctx, n.ID, etag, 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		woke <- m
	}()
	time.Sleep(100 * time.Millisecond) // the poll is waiting
	d, err := c.SetDeviceTags(f.ctx, robot.ID, "tag:ssh", "robots", "tag:ssh")
	if err != nil || !slices.Equal(d.Tags, []string{"tag:robots", "tag:ssh"}) {
		t.Fatalf("set tags: %+v %v, want them normalised, sorted, once each", d.Tags, err)
	}
	select {
	case m := <-woke:
		if i := slices.IndexFunc(m.Peers, func(p wire.MapPeer) bool { return p.DeviceID == robot.ID }); i < 0 ||
			!slices.Equal(m.Peers[i].Tags, d.Tags) {
			t.Fatalf("the woken map's robot: %+v", m.Peers)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a tag change did not wake the map poll")
	}
	if got := f.device(c, robot.ID); !slices.Equal(got.Tags, d.Tags) {
		t.Fatalf("GET device tags %v, want %v", got.Tags, d.Tags)
	}
	ms, err := c.Members(f.ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if want := map[string][]string{robot.ID: d.Tags}[m.DeviceID]; !slices.Equal(m.Tags, want) {
			t.Errorf("member %s tags %v, want %v", m.Name, m.Tags, want)
		}
	}

	if _, err := c.SetPolicy(f.ctx, n.ID, []byte(doc)); err != nil {
		t.Fatalf("the policy naming tag:ssh once robot carries it: %v", err)
	}
	check := func(src, dst string, port int) bool {
		t.Helper()
		r, err := c.CheckPolicy(f.ctx, n.ID, wire.PolicyCheckRequest{Src: src, Dst: dst, Proto: "tcp", Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return r.Allowed
	}
	if !check("laptop", "robot", 22) || check("laptop", "robot", 80) || check("robot", "laptop", 22) {
		t.Fatal("dry run of the tag:ssh policy")
	}
	if _, err := c.SetDeviceTags(f.ctx, robot.ID); err != nil {
		t.Fatal(err)
	}
	if check("laptop", "robot", 22) {
		t.Fatal("robot no longer carries tag:ssh, yet the policy still lets laptop reach it")
	}
	if got := f.device(c, robot.ID); len(got.Tags) != 0 {
		t.Fatalf("cleared tags: %v", got.Tags)
	}

	// Bad lists: 400, nothing written (not even the name sent with them).
	token, _ := c.Tokens()
	many := make([]string, 17)
	for i := range many {
		many[i] = "tag:t" + strings.Repeat("x", i)
	}
	for _, bad := range [][]string{{"tag:"}, {"tag:a b"}, {"tag:a,b"}, {"tag:" + strings.Repeat("x", 65)}, {"tag:ok", "group:ops"}, many} {
		r := f.do(http.MethodPatch, "/api/v2/devices/"+robot.ID, token, map[string]any{"name": "renamed", "tags": bad})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"error"`) {
			t.Errorf("tags %q: %d %s, want a 400 with a JSON error", bad, r.Status, r.Body)
		}
	}
	if got := f.device(c, robot.ID); got.Name != "robot" || len(got.Tags) != 0 {
		t.Fatalf("a refused request changed the device: %+v", got)
	}

	// Another user can neither tag the device nor learn its tags.
	_, other := f.user(config.PlanFree)
	if _, err := other.SetDeviceTags(f.ctx, robot.ID, "tag:ssh"); client.StatusOf(err) != http.StatusForbidden &&
		client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("another user tagged the device: %v", err)
	}
}
