package api_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
)

// newPublicKey is a fresh X25519 public key in standard base64.
func newPublicKey(t *testing.T) string {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())
}

// A user server publishes its nucleus's public key (validated like a
// device key; an update without one keeps it), and a join answer names
// the key of the nucleus it points at: the user server's, or the
// built-in nucleus's.
func TestNucleusPublicKeyInServerAndJoin(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok := apiToken(c)
	key := newPublicKey(t)
	body := func(k string) string {
		return fmt.Sprintf(`{"name":"lab","host":"nucleus.example.com:51820","country":"US","public_key":%q}`, k)
	}
	r := f.do("POST", "/api/v2/user-servers", tok, body(key))
	r.wantStatus(t, http.StatusCreated)
	srv := r.object(t)
	if srv["public_key"] != key {
		t.Fatalf("created %v, want public_key %s", srv, key)
	}
	id := srv["id"].(string)
	for name, bad := range map[string]string{
		"not base64": "not a key",
		"short":      base64.StdEncoding.EncodeToString(make([]byte, 31)),
		"all zero":   base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"url base64": strings.NewReplacer("+", "-", "/", "_").Replace(strings.Repeat("+/", 21)) + "A=",
	} {
		t.Run(name, func(t *testing.T) {
			f := f.in(t)
			f.do("POST", "/api/v2/user-servers", tok, body(bad)).wantError(t, http.StatusBadRequest, "invalid_request")
			f.do("PUT", "/api/v2/user-servers/"+id, tok, body(bad)).wantError(t, http.StatusBadRequest, "invalid_request")
		})
	}
	// An update without a key keeps the one published; one with a key
	// replaces it.
	r = f.do("PUT", "/api/v2/user-servers/"+id, tok, `{"name":"lab","host":"moved.example.com:51820","country":"US"}`)
	r.wantStatus(t, http.StatusOK)
	if got := r.object(t)["public_key"]; got != key {
		t.Fatalf("an update without a key changed it to %v", got)
	}
	key2 := newPublicKey(t)
	r = f.do("PUT", "/api/v2/user-servers/"+id, tok, body(key2))
	r.wantStatus(t, http.StatusOK)
	if got := r.object(t)["public_key"]; got != key2 {
		t.Fatalf("public_key %v after the update, want %s", got, key2)
	}

	// Join answers name the nucleus's key.
	hosted := f.do("POST", "/api/v2/virtual-networks", tok, fmt.Sprintf(`{"name":"hosted","server_id":%q}`, id))
	hosted.wantStatus(t, http.StatusCreated)
	builtin := f.network(c, "builtin", "")
	d := f.register(c, "hw-key")
	for _, x := range []struct {
		network, want string
	}{{hosted.object(t)["id"].(string), key2}, {builtin.ID, ""}} {
		r := f.do("POST", "/api/v2/virtual-networks/"+x.network+"/devices/"+d.ID, tok, nil)
		r.wantStatus(t, http.StatusOK)
		s, _ := r.object(t)["server"].(map[string]any)
		got, _ := s["public_key"].(string)
		if raw, err := base64.StdEncoding.DecodeString(got); err != nil || len(raw) != 32 {
			t.Fatalf("join answer's server %v names no nucleus key", s)
		}
		if x.want != "" && got != x.want {
			t.Fatalf("join answer names %s, want the user server's %s", got, x.want)
		}
		if x.want == "" && got == key2 {
			t.Fatal("the built-in nucleus's join answer names the user server's key")
		}
	}
}
