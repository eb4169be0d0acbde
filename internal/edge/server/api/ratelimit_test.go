package api_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// ---- 6. rate limits ----

// apiWantRateLimited fails unless r is a 429 with Retry-After >= 1 and a JSON
// rate_limited error; it returns the Retry-After.
func apiWantRateLimited(t *testing.T, r apiResp) time.Duration {
	t.Helper()
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After = %q, want an integer >= 1", r.Header.Get("Retry-After"))
	}
	return time.Duration(secs) * time.Second
}

func TestRateLimitToken(t *testing.T) {
	t.Parallel()
	apiRateLimitTokenCase(t, edgetest.Options{})
}

func apiRateLimitTokenCase(t *testing.T, o edgetest.Options) {
	inner := o.Config
	o.Config = func(c *config.Config) {
		if inner != nil {
			inner(c)
		}
		c.RateLimitToken, c.RateLimitIP = 2, 0
	}
	f := newAPIFx(t, o)
	u, c := f.user("")
	tok := apiToken(c)
	burst := 4 // 2/s with a burst of 2 s

	for i := range burst {
		if r := f.do("GET", "/api/v2/users/me", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d of the burst: %s", i+1, r)
		}
	}
	retry := apiWantRateLimited(t, f.do("GET", "/api/v2/devices", tok, nil))
	_, err := c.Me(f.ctx)
	apiWantErr(t, err, http.StatusTooManyRequests, "rate_limited")
	var ae *client.APIError
	if errors.As(err, &ae) && ae.RetryAfter < time.Second {
		t.Errorf("client RetryAfter = %v", ae.RetryAfter)
	}

	// Another session of the same user has its own budget.
	other := f.env.Client(u)
	_, err = other.Me(f.ctx)
	apiOK(t, err)

	f.env.Clock.Advance(retry)
	f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	f.env.Clock.Advance(10 * time.Second) // a full bucket again
	for range burst {
		f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	}
	apiWantRateLimited(t, f.do("POST", "/api/v2/devices/heartbeat", tok, `{"hardware_id":"x"}`))
}

func TestRateLimitIP(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(func(c *config.Config) { c.RateLimitIP, c.RateLimitToken = 3, 0 }))
	u := f.env.NewUser("")
	burst := 6 // 3/s with a burst of 2 s

	// Public endpoints count: spend the whole burst on failed logins.
	for i := range burst {
		r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: "oek_wrong"})
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("request %d of the burst: %s", i+1, r)
		}
	}
	retry := apiWantRateLimited(t, f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key}))
	apiWantRateLimited(t, f.do("GET", "/api/v2/users/me", "", nil))

	f.env.Clock.Advance(retry)
	c := f.env.Client(u) // the bucket refills: login passes again

	f.env.Clock.Advance(time.Minute)
	for range burst {
		f.do("GET", "/api/v2/users/me", apiToken(c), nil).wantStatus(t, http.StatusOK)
	}
	apiWantRateLimited(t, f.do("GET", "/api/v2/users/me", apiToken(c), nil))
}

func TestRateLimitOff(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(func(c *config.Config) { c.RateLimitIP, c.RateLimitToken = 0, 0 }))
	u, c := f.user("")
	tok := apiToken(c)
	for i := range 150 {
		if r := f.do("GET", "/api/v2/users/me", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i+1, r)
		}
	}
	for i := range 30 {
		if r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key}); r.Status != http.StatusOK {
			t.Fatalf("login %d: %s", i+1, r)
		}
	}
}
