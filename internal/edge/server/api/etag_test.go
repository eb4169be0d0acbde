package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// getIf is a GET with If-None-Match (none when inm is empty).
func (f *apiFx) getIf(path, bearer, inm string) apiResp {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.env.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	return f.send(req)
}

// tagOf GETs path and returns its ETag, failing unless the answer is a
// 200 with a tag and Cache-Control: no-store.
func (f *apiFx) tagOf(t *testing.T, path, bearer string) string {
	t.Helper()
	r := f.getIf(path, bearer, "")
	r.wantStatus(t, http.StatusOK)
	tag := r.Header.Get("ETag")
	if !strings.HasPrefix(tag, `"`) || len(tag) < 10 {
		t.Fatalf("GET %s: ETag %q", path, tag)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("GET %s: Cache-Control %q, want no-store", path, cc)
	}
	return tag
}

// wantNotModified fails unless GET path with If-None-Match: inm is a 304
// without a body that repeats tag.
func (f *apiFx) wantNotModified(t *testing.T, path, bearer, inm, tag string) {
	t.Helper()
	r := f.getIf(path, bearer, inm)
	if r.Status != http.StatusNotModified || len(r.Body) != 0 || r.Header.Get("ETag") != tag {
		t.Fatalf("GET %s If-None-Match %s: %d %q ETag %q, want 304, no body, ETag %s", path, inm, r.Status, r.Body, r.Header.Get("ETag"), tag)
	}
}

// wantModified fails unless GET path with If-None-Match: old is a 200
// with a full body and another tag, which it returns.
func (f *apiFx) wantModified(t *testing.T, path, bearer, old string) string {
	t.Helper()
	r := f.getIf(path, bearer, old)
	if r.Status != http.StatusOK || len(r.Body) == 0 {
		t.Fatalf("GET %s If-None-Match %s after a change: %s, want 200 with the list", path, old, r)
	}
	tag := r.Header.Get("ETag")
	if tag == "" || tag == old {
		t.Fatalf("GET %s after a change: ETag %q, want a new one (was %s)", path, tag, old)
	}
	return tag
}

// Every list the dashboard polls answers 200 with an ETag, then 304
// without a body while nothing changed (also for a weak form of the tag,
// a list naming it and "*"), and 200 for any other tag.
func TestListsConditional(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig())
	_, c := f.user("")
	tok := apiToken(c)
	n := f.network(c, "home", "")
	d := f.register(c, "hw-etag-1")
	f.join(c, n.ID, d.ID)
	f.userServer(c, "lab", "nucleus.example.com:7787", "DE")
	for _, path := range []string{
		"/api/v2/virtual-networks",
		"/api/v2/virtual-networks/" + n.ID + "/devices",
		"/api/v2/devices",
		"/api/v2/security-keys",
		"/api/v2/sessions",
		"/api/v2/user-servers",
	} {
		t.Run(strings.TrimPrefix(path, "/api/v2/"), func(t *testing.T) {
			f := f.in(t)
			tag := f.tagOf(t, path, tok)
			if again := f.tagOf(t, path, tok); again != tag {
				t.Fatalf("ETag of an unchanged list changed: %s then %s", tag, again)
			}
			f.wantNotModified(t, path, tok, tag, tag)
			f.wantNotModified(t, path, tok, "W/"+tag, tag)
			f.wantNotModified(t, path, tok, `"other", `+tag, tag)
			f.wantNotModified(t, path, tok, "*", tag)
			for _, other := range []string{`"other"`, strings.Trim(tag, `"`), tag[:len(tag)-2] + `"`, `W/"x`, `,,, "`, strings.Repeat(`"x", `, 40) + tag} {
				if r := f.getIf(path, tok, other); r.Status != http.StatusOK || len(r.Body) == 0 {
					t.Errorf("If-None-Match %.60q: %d, want 200 with the list", other, r.Status)
				}
			}
		})
	}
}

// A change to anything a list shows changes its tag: a 304 never hides
// a new device, a rename, an exit-node choice, a heartbeat's online
// state and last_seen, nor the device going offline by time alone.
func TestListsETagFollowChanges(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig())
	u, c := f.user("")
	tok := apiToken(c)
	n := f.network(c, "home", "")
	members := "/api/v2/virtual-networks/" + n.ID + "/devices"
	const devices, networks = "/api/v2/devices", "/api/v2/virtual-networks"
	tm, td, tn := f.tagOf(t, members, tok), f.tagOf(t, devices, tok), f.tagOf(t, networks, tok)

	// A device registers: the devices list changes, the members list not.
	a := f.register(c, "hw-a")
	td = f.wantModified(t, devices, tok, td)
	f.wantNotModified(t, members, tok, tm, tm)
	// It joins: both.
	f.join(c, n.ID, a.ID)
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)

	// A heartbeat brings it online.
	f.heartbeat(c, "hw-a", true)
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	var ms []wire.Member
	f.getIf(members, tok, "").decode(t, &ms)
	if len(ms) != 1 || !ms[0].Online {
		t.Fatalf("members after a heartbeat: %+v", ms)
	}
	f.wantNotModified(t, members, tok, tm, tm)

	// A heartbeat a few seconds later moves last_seen only.
	f.env.Clock.Advance(5 * time.Second)
	f.wantNotModified(t, members, tok, tm, tm)
	f.heartbeat(c, "hw-a", true)
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)

	// Without another heartbeat it goes offline once the window passes:
	// nothing was written, only time moved.
	f.env.Clock.Advance(f.env.Config.OnlineWindow - 5*time.Second)
	f.wantNotModified(t, members, tok, tm, tm)
	f.env.Clock.Advance(5 * time.Second)
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	f.getIf(members, tok, "").decode(t, &ms)
	if len(ms) != 1 || ms[0].Online {
		t.Fatalf("members after the online window: %+v", ms)
	}

	// Rename; exit node allowed; another member selects it.
	if _, err := c.RenameDevice(f.ctx, a.ID, "renamed"); err != nil {
		t.Fatal(err)
	}
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	yes := true
	f.updateMember(c, n.ID, a.ID, wire.UpdateMemberRequest{IsExitNode: &yes})
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	b := f.register(c, "hw-b")
	f.join(c, n.ID, b.ID)
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	f.updateMember(c, n.ID, b.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(a.ID)})
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)
	f.updateMember(c, n.ID, b.ID, wire.UpdateMemberRequest{ExitNode: wire.Null()})
	tm, td = f.wantModified(t, members, tok, tm), f.wantModified(t, devices, tok, td)

	// Renaming the network changes the networks list, the devices list
	// (which names each device's networks) and the members (whose DNS
	// names end in the network's derived label).
	name := "office"
	if _, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: &name}); err != nil {
		t.Fatal(err)
	}
	f.wantModified(t, networks, tok, tn)
	f.wantModified(t, devices, tok, td)
	f.wantModified(t, members, tok, tm)

	// Keys and sessions: a new key, a new login of the same user.
	const keys, sessions = "/api/v2/security-keys", "/api/v2/sessions"
	tk, ts := f.tagOf(t, keys, tok), f.tagOf(t, sessions, tok)
	if _, err := c.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "robot"}); err != nil {
		t.Fatal(err)
	}
	f.wantModified(t, keys, tok, tk)
	f.wantNotModified(t, sessions, tok, ts, ts)
	f.env.Client(u)
	f.wantModified(t, sessions, tok, ts)
}

// A tag is the caller's: another user sending it gets their own list,
// never a 304 — not even when both lists are identical (both empty).
func TestListsETagPerUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig())
	_, ca := f.user("")
	_, cb := f.user("")
	ta, tb := apiToken(ca), apiToken(cb)
	for _, path := range []string{"/api/v2/virtual-networks", "/api/v2/devices", "/api/v2/user-servers"} {
		ra, rb := f.getIf(path, ta, ""), f.getIf(path, tb, "")
		if string(ra.Body) != string(rb.Body) {
			t.Fatalf("%s: two new users' lists differ: %s / %s", path, ra.Body, rb.Body)
		}
		tagA := ra.Header.Get("ETag")
		if tagA == "" || tagA == rb.Header.Get("ETag") {
			t.Fatalf("%s: identical lists of two users share the tag %q", path, tagA)
		}
		if r := f.getIf(path, tb, tagA); r.Status != http.StatusOK {
			t.Fatalf("%s: user B with user A's tag: %d, want 200", path, r.Status)
		}
	}
	// Different lists: A's devices, B asking with A's tag.
	f.register(ca, "hw-a")
	f.register(cb, "hw-b")
	tagA := f.tagOf(t, "/api/v2/devices", ta)
	r := f.getIf("/api/v2/devices", tb, tagA)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "hw-b") || strings.Contains(string(r.Body), "hw-a") {
		t.Fatalf("user B with user A's tag: %s, want B's own list", r)
	}
	// B's own tag of a network: A cannot read B's members with it either.
	n := f.network(cb, "b-net", "")
	path := "/api/v2/virtual-networks/" + n.ID + "/devices"
	tagB := f.tagOf(t, path, tb)
	f.getIf(path, ta, tagB).wantError(t, http.StatusForbidden, "forbidden")
}
