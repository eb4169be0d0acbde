package hosted

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/clock"
)

// Lookups of networks arriving together while the served set is stale
// cause one fetch: the ones that waited for it use its answer.
func TestConcurrentLookupsFetchOnce(t *testing.T) {
	var fetches atomic.Int32
	release := make(chan struct{})
	s := &source{clk: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), log: slog.New(slog.DiscardHandler),
		nets: map[string]servedNet{},
		fetch: func(context.Context) ([]wire.ServedNetwork, error) {
			fetches.Add(1)
			<-release
			return []wire.ServedNetwork{{ID: "vn_a", SecretKey: "secret", SecretVersion: 1}}, nil
		}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Network(context.Background(), "vn_a")
			errs <- err
		}()
	}
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the others queue behind the first fetch
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for lookups arriving together, want 1", n)
	}
}
