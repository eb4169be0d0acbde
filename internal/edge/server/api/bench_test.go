package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkHeartbeat measures the heartbeat handler in-process (middleware,
// authentication, rate limits, cache, presence, encoding) without the
// network, over 1000 devices with an exit-node selection on some of them.
func BenchmarkHeartbeat(b *testing.B) {
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
	const n = 1000
	bodies := make([]string, n)
	for i := range bodies {
		hw := fmt.Sprintf("hw-%d", i)
		if _, _, err := env.Service.RegisterDevice(ctx, p, hw, hw, "linux", ""); err != nil {
			b.Fatal(err)
		}
		bodies[i] = `{"hardware_id":"` + hw + `","is_exit_node":false}`
	}
	h := httpx.Wrap(env.App.Handler(), logging.Discard(), httpx.NewMetrics(prometheus.NewRegistry(), "bench"))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			req := httptest.NewRequest(http.MethodPost, "/api/v2/devices/heartbeat", strings.NewReader(bodies[i%n]))
			req.Header.Set("Authorization", "Bearer "+pair.Token)
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
