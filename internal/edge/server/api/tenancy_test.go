package api_test

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// withFlags applies command-line flags to a test configuration, keeping
// what edgetest chose for the data dir, listen address and rate limits.
func withFlags(t *testing.T, args ...string) func(*config.Config) {
	t.Helper()
	return func(c *config.Config) {
		t.Helper()
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		loaded, err := config.Load(fs, args, func(string) string { return "" })
		if err != nil {
			t.Fatalf("config flags %v: %v", args, err)
		}
		loaded.DataDir, loaded.NucleusListen = c.DataDir, c.NucleusListen
		loaded.RateLimitIP, loaded.RateLimitToken = c.RateLimitIP, c.RateLimitToken
		*c = *loaded
	}
}

// ---- item: address ranges are per owner ----

// Another tenant must neither be blocked by nor learn anything about other
// users' ranges.
func TestRangesPerOwner(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, a := f.user("pro")
	_, b := f.user("pro")

	secret := f.network(a, "a-secret", "100.70.5.0/24")
	aOther := f.network(a, "a-other", "100.80.1.0/24")
	aDefault := f.network(a, "a-default", "")

	// B's default range is chosen among B's own networks only: A's
	// allocations neither move nor reveal it.
	bDefault := f.network(b, "b-default", "")
	if bDefault.IPRange != aDefault.IPRange {
		t.Errorf("B's first default range %s differs from A's %s: the allocator leaks other tenants' use", bDefault.IPRange, aDefault.IPRange)
	}
	// B may take A's exact range.
	same := f.network(b, "b-same", secret.IPRange)
	if same.IPRange != secret.IPRange {
		t.Fatalf("B asking for %s got %s", secret.IPRange, same.IPRange)
	}
	// An overlap with B's own network is refused, and the error names
	// nothing of A's.
	r := f.do("POST", "/api/v2/virtual-networks", apiToken(b), wire.CreateNetworkRequest{Name: "b-inner", IPRange: "100.70.5.128/25"})
	r.wantError(t, http.StatusBadRequest, "invalid_request")
	for _, leak := range []string{secret.ID, "a-secret", aDefault.ID, aOther.IPRange} {
		if strings.Contains(string(r.Body), leak) {
			t.Errorf("overlap error %s reveals %q of another tenant", r, leak)
		}
	}
	// A range overlapping only A's networks is B's to take.
	f.network(b, "b-around", "100.80.0.0/16")
	// A itself still cannot overlap its own networks.
	_, err := a.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "a-inner", IPRange: "100.70.5.0/25"})
	apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
}

// An explicit range is at most a /16 by default, and the bound is
// configurable.
func TestRangeSizeCap(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")
	for _, big := range []string{"100.64.0.0/10", "100.64.0.0/12", "100.96.0.0/15"} {
		r := f.do("POST", "/api/v2/virtual-networks", apiToken(c), wire.CreateNetworkRequest{Name: "big", IPRange: big})
		r.wantError(t, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(string(r.Body), "/16") {
			t.Errorf("%s: error %s does not name the /16 bound", big, r)
		}
	}
	f.network(c, "max", "100.96.0.0/16")

	g := newAPIFx(t, edgetest.Options{Config: withFlags(t, "--network-max-range=20")})
	_, c2 := g.user("pro")
	_, err := c2.CreateNetwork(g.ctx, wire.CreateNetworkRequest{Name: "too-big", IPRange: "100.96.0.0/19"})
	apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	g.network(c2, "ok", "100.96.0.0/20")
}

// ---- item: --trust-proxy takes trusted proxy CIDRs ----

// Behind a trusted proxy (the test client is on loopback), the client IP is
// the right-most X-Forwarded-For entry that is not a trusted proxy: a
// client forging left-most entries still lands in its own rate bucket.
func TestTrustProxyRightmost(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{Config: func(c *config.Config) {
		withFlags(t, "--trust-proxy=127.0.0.0/8,10.0.0.0/8")(c)
		c.RateLimitIP, c.RateLimitToken = 1, 0
	}})
	send := func(xff string) apiResp {
		req, err := http.NewRequestWithContext(f.ctx, "GET", f.env.URL+"/api/v2/auth/login/session", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", xff)
		return f.send(req)
	}
	// Burst 2 per IP: the attacker at 198.51.100.7 forges a new left-most
	// entry each time; the trusted inner proxy 10.1.1.1 appends nothing
	// that counts.
	for i := range 2 {
		send(fmt.Sprintf("203.0.113.%d, 198.51.100.7, 10.1.1.1", i)).wantStatus(t, http.StatusOK)
	}
	apiWantRateLimited(t, send("203.0.113.99, 198.51.100.7"))
	// Another client behind the same proxies has its own bucket.
	send("198.51.100.8").wantStatus(t, http.StatusOK)
}
