package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/prometheus/client_golang/prometheus"
)

// seedNetwork adds n devices of the user, all members of the network
// (hosts 1..n), straight into the database in one transaction; every
// other device was seen a minute ago (online), the rest a day ago.
func seedNetwork(tb testing.TB, env *edgetest.Env, userID string, network control.Network, n int) {
	tb.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite://"+filepath.Join(env.Config.DataDir, "omni.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	now := env.Clock.Now()
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		for i := range n {
			id := fmt.Sprintf("dev-%05d", i)
			key := sha256.Sum256([]byte(id))
			seen := now.Add(-time.Minute)
			if i%2 == 1 {
				seen = now.Add(-24 * time.Hour)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO edge_devices (id, user_id, hardware_uuid, name, platform, created_at, last_seen, public_key)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, id, userID, "hw-"+id, "device "+id, "linux", now.Add(-48*time.Hour).UnixMilli(),
				seen.UnixMilli(), base64.StdEncoding.EncodeToString(key[:])); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO edge_memberships (network_id, device_id, host, joined_at) VALUES (?, ?, ?, ?)`,
				network.ID, id, i+1, now.Add(-47*time.Hour).UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkNetworkPage is the calls of the dashboard's network page for
// a network of 10,000 devices, through the whole handler (middleware,
// authentication, presence, encoding): the page's first load ("page"),
// each call alone with its answer's size, and the lists the dashboard
// polls as a poll of an unchanged list is answered (-304):
//
//	go test ./internal/edge/server/api -run '^$' -bench NetworkPage -benchtime 20x
func BenchmarkNetworkPage(b *testing.B) {
	env := edgetest.New(b, edgetest.Options{Config: func(c *config.Config) {
		c.RateLimitIP, c.RateLimitToken = 1e9, 1e9
	}})
	ctx := context.Background()
	u := env.NewUser("unlimited")
	pair, err := env.Service.LoginSecurityKey(ctx, u.Key)
	if err != nil {
		b.Fatal(err)
	}
	p := control.Principal{UserID: u.ID}
	n, err := env.Service.CreateNetwork(ctx, p, "fleet", "100.80.0.0/16", "")
	if err != nil {
		b.Fatal(err)
	}
	const devices = 10_000
	seedNetwork(b, env, u.ID, n, devices)
	h := httpx.Wrap(env.App.Handler(), logging.Discard(), httpx.NewMetrics(prometheus.NewRegistry(), "bench"))
	get := func(path, inm string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+pair.Token)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	// page is what the network page waits for before it shows the
	// members: the network with the user's servers, then the members (the
	// devices that could join are read after, without holding the page).
	b.Run("page", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			for _, path := range []string{"/api/v2/virtual-networks/" + n.ID, "/api/v2/user-servers", "/api/v2/virtual-networks/" + n.ID + "/devices"} {
				if w := get(path, ""); w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
				}
			}
		}
	})
	for _, c := range []struct {
		name, path string
		poll       bool // also as the dashboard's poll: If-None-Match of the last answer → 304
	}{
		{"network", "/api/v2/virtual-networks/" + n.ID, false},
		{"members", "/api/v2/virtual-networks/" + n.ID + "/devices", true},
		{"networks", "/api/v2/virtual-networks", true},
		{"devices", "/api/v2/devices", true},
	} {
		path := c.path
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var size int
			defer cpuPerOp(b)()
			for b.Loop() {
				w := get(path, "")
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "body-B")
		})
		if !c.poll {
			continue
		}
		b.Run(c.name+"-304", func(b *testing.B) {
			tag := get(path, "").Header().Get("ETag")
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				if w := get(path, tag); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
					b.Fatalf("GET %s If-None-Match %s: %d, want 304 without a body", path, tag, w.Code)
				}
			}
			b.ReportMetric(0, "body-B")
		})
	}
}

// cpuPerOp reports the process's CPU time per iteration (cpu-ms/op) of
// the benchmark from now until the returned function runs: on a busy
// machine the wall time of ns/op grows with the load, this does not.
func cpuPerOp(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N)/1e6, "cpu-ms/op")
		}
	}
}
