package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// lab is a user's network "lab" with two members, laptop and robot.
func (f *apiFx) lab(t *testing.T) (*client.Client, wire.Network, wire.Device, wire.Device) {
	t.Helper()
	_, c := f.user(config.PlanFree)
	n := f.network(c, "lab", "")
	laptop := f.register(c, "hw-laptop")
	robot := f.register(c, "hw-robot")
	for _, d := range []wire.Device{laptop, robot} {
		if _, err := c.RenameDevice(f.ctx, d.ID, strings.TrimPrefix(d.HardwareUUID, "hw-")); err != nil {
			t.Fatal(err)
		}
	}
	f.join(c, n.ID, laptop.ID)
	f.join(c, n.ID, robot.ID)
	return c, n, laptop, robot
}

// A network's policy: set, read, dry-run; a document that does not parse
// or names an unknown member is a 400 that says where, and the stored
// policy stays; If-Match guards concurrent edits; another user gets
// nothing.
func TestPolicy(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	c, n, _, _ := f.lab(t)

	got, err := c.Policy(f.ctx, n.ID)
	if err != nil || got.Version != 0 || string(got.Policy) != "null" {
		t.Fatalf("no policy yet: %+v %v", got, err)
	}
	check := func(src, dst, proto string, port int) bool {
		t.Helper()
		r, err := c.CheckPolicy(f.ctx, n.ID, wire.PolicyCheckRequest{Src: src, Dst: dst, Proto: proto, Port: port})
		if err != nil {
			t.Fatalf("check %s→%s %s/%d: %v", src, dst, proto, port, err)
		}
		return r.Allowed
	}
	if !check("laptop", "robot", "tcp", 80) {
		t.Fatal("without a policy everything is allowed")
	}

	doc := `{"rules": [{"action": "accept", "src": ["laptop"], "dst": ["robot:22"], "proto": "tcp"}]}`
	set, err := c.SetPolicy(f.ctx, n.ID, []byte(doc))
	if err != nil || set.Version != 1 {
		t.Fatalf("set: %+v %v", set, err)
	}
	if !check("laptop", "robot", "tcp", 22) || check("laptop", "robot", "tcp", 80) || check("laptop", "robot", "icmp", 0) || check("robot", "laptop", "tcp", 22) {
		t.Fatal("dry run of the TCP 22 policy")
	}
	m, _, _, err := c.Map(f.ctx, n.ID, "", 0)
	if err != nil || m.PolicyVersion != 1 || !bytes.Contains(m.Policy, []byte(`"robot:22"`)) {
		t.Fatalf("the map does not carry the policy: %+v %v", m, err)
	}

	for _, bad := range []struct{ doc, want string }{
		{`{"rules": [{"action": "accept", "src": ["laptop"], "dst": ["robot:ssh"]}]}`, `rules[0].dst[0]`},
		{`{"rules": [{"action": "accept", "src": ["printer"], "dst": ["robot:22"]}]}`, `rules[0].src[0]`},
		{"{\n  \"rules\": [\n    {\"action\": \"accept\", \"src\": [\"laptop\"], \"dst\": [\"robot:22\"], \"extra\": 1}\n  ]\n}", "line 3"},
		{`{"rules": [`, "policy"},
	} {
		_, err := c.SetPolicy(f.ctx, n.ID, []byte(bad.doc))
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, bad.want) {
			t.Errorf("policy %s: %v, want a 400 naming %q", bad.doc, err, bad.want)
		}
	}
	if got, _ := c.Policy(f.ctx, n.ID); got.Version != 1 || !bytes.Contains(got.Policy, []byte(`robot:22`)) {
		t.Fatalf("a refused policy replaced the stored one: %+v", got)
	}
	if _, err := c.CheckPolicy(f.ctx, n.ID, wire.PolicyCheckRequest{Src: "nobody", Dst: "robot", Proto: "tcp", Port: 22}); client.StatusOf(err) != http.StatusBadRequest {
		t.Fatalf("a dry run naming nobody: %v", err)
	}
	if r, err := c.CheckPolicy(f.ctx, n.ID, wire.PolicyCheckRequest{Policy: json.RawMessage(`{"rules": []}`), Src: "laptop", Dst: "robot", Proto: "tcp", Port: 22}); err != nil || r.Allowed {
		t.Fatalf("a dry run of a deny-all document: %+v %v", r, err)
	}

	// If-Match: a stale version is refused with 412.
	put := func(ifMatch, body string) *http.Response {
		req, _ := http.NewRequest("PUT", f.env.URL+"/api/v2/virtual-networks/"+n.ID+"/policy", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiToken(c))
		req.Header.Set("Content-Type", "application/json")
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := f.env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := put(`"0"`, doc); r.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("If-Match with a stale version: %d", r.StatusCode)
	}
	if r := put(`"1"`, `null`); r.StatusCode != http.StatusOK || r.Header.Get("ETag") != `"2"` {
		t.Fatalf("If-Match with the current version: %d %s", r.StatusCode, r.Header.Get("ETag"))
	}
	if !check("robot", "laptop", "udp", 53) {
		t.Fatal("a null policy allows everything again")
	}
	if r := put("", `{"rules": [`+strings.Repeat(`{"action":"accept","src":["*"],"dst":["*:*"]},`, 6000)+`{}]}`); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a policy above 256 KiB: %d", r.StatusCode)
	}

	_, other := f.user(config.PlanFree)
	if _, err := other.Policy(f.ctx, n.ID); err == nil {
		t.Fatal("another user read the policy")
	}
	if _, err := other.SetPolicy(f.ctx, n.ID, []byte(`{"rules": []}`)); err == nil {
		t.Fatal("another user set the policy")
	}
}
