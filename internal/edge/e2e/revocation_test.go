//go:build linux

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// TestRevocationAcrossReplicas: a session logged out on one replica is
// refused by the other at once — the revoked set travels through Redis —
// while another session keeps working on both.
func TestRevocationAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := testenv.Postgres(t)
	_, prefix := testenv.Redis(t)
	masterKey := base64.StdEncoding.EncodeToString(auth.RandomBytes(32))
	shared := []string{"--database", dsn, "--redis", testenv.RedisURL(), "--redis-prefix", prefix, "--master-key", masterKey}
	email := fmt.Sprintf("revoke-%d@example.com", time.Now().UnixNano())
	runAdmin(t, append([]string{"user", "create", "--email", email, "--password", "correct horse battery", "--json"}, shared...)...)
	var key struct{ Key string }
	if err := json.Unmarshal(runAdmin(t, append([]string{"key", "create", "--email", email, "--json"}, shared...)...), &key); err != nil || !strings.HasPrefix(key.Key, "oek_") {
		t.Fatalf("key create: %v %+v", err, key)
	}
	limits := []string{"--rate-limit-token", "0", "--rate-limit-ip", "0"}
	a := startReplica(t, "replica A", append(shared, limits...)...)
	b := startReplica(t, "replica B", append(shared, limits...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	victim, bystander := client.New(a.url, nil), client.New(a.url, nil)
	for _, c := range []*client.Client{victim, bystander} {
		if _, err := c.LoginSecurityKey(ctx, key.Key); err != nil {
			t.Fatal(err)
		}
	}
	stolen, _ := victim.Tokens()
	status := func(r *replica, tok string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", r.url+"/api/v2/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := status(b, stolen); st != http.StatusOK {
		t.Fatalf("token on B before logout: %d", st)
	}
	if err := victim.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyWithin(t, "replica B refusing the logged-out session's access token", 2*time.Second, func() bool {
		return status(b, stolen) == http.StatusUnauthorized
	})
	if st := status(a, stolen); st != http.StatusUnauthorized {
		t.Fatalf("replica A accepts the logged-out token: %d", st)
	}
	other, _ := bystander.Tokens()
	if status(a, other) != http.StatusOK || status(b, other) != http.StatusOK {
		t.Fatal("another session was revoked too")
	}
}
