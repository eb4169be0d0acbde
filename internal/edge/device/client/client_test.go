package client_test

import (
	"context"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
)

// Calls made at once with an expired access token renew it once: the
// refresh token is single-use, and a second use would make the control
// plane revoke the login as stolen (a daemon's heartbeat and its network
// map polls run side by side).
func TestConcurrentCallsRenewOnce(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("pro")
	// Only the refresh token can renew this client's login (no security
	// key to fall back on).
	c := client.New(env.URL, env.Server.Client())
	c.SetTokens(env.Client(u).Tokens())
	ctx := context.Background()
	if _, err := c.Me(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		env.Clock.Advance(env.Config.AccessTokenTTL + 1)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Me(ctx)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: a call with the expired token: %v", round, err)
			}
		}
	}
}
