package search

import (
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// The bounds of the analytics: providers tracked (only those the router
// routed a search to, which the operator configured) and the latencies
// kept per provider for its percentiles.
const (
	MaxTrackedProviders = 256
	LatencySamples      = 1024
)

// analytics counts, per provider, what this replica's searches did. It
// is kept in memory: each replica reports its own, and the usage records
// (modality search) are the durable, shared account.
type analytics struct {
	since time.Time
	mu    sync.Mutex
	by    map[string]*providerStats
}

type providerStats struct {
	requests, upstream, errors, hits, coalesced int64
	inFlight                                    int64
	lat                                         []time.Duration // a ring of LatencySamples
	next                                        int
}

// event is one search answered at a provider.
type event struct {
	upstream, failed, hit, coalesced bool
	latency                          time.Duration // of an upstream call
}

func newAnalytics(now time.Time) *analytics {
	return &analytics{since: now, by: map[string]*providerStats{}}
}

// of returns provider's figures, nil when MaxTrackedProviders are
// tracked already; a.mu is held.
func (a *analytics) of(provider string) *providerStats {
	p := a.by[provider]
	if p == nil && len(a.by) < MaxTrackedProviders {
		p = &providerStats{}
		a.by[provider] = p
	}
	return p
}

// enter counts a search being answered at provider until leave.
func (a *analytics) enter(provider string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.of(provider); p != nil {
		p.inFlight++
	}
}

func (a *analytics) leave(provider string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.by[provider]; p != nil && p.inFlight > 0 {
		p.inFlight--
	}
}

func (a *analytics) record(provider string, e event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.of(provider)
	if p == nil {
		return
	}
	p.requests++
	switch {
	case e.hit:
		p.hits++
	case e.coalesced:
		p.coalesced++
	case e.upstream:
		p.upstream++
		if len(p.lat) < LatencySamples {
			p.lat = append(p.lat, e.latency)
		} else {
			p.lat[p.next] = e.latency
			p.next = (p.next + 1) % LatencySamples
		}
	}
	if e.failed {
		p.errors++
	}
}

// ProviderAnalytics is one provider's figures.
type ProviderAnalytics struct {
	Provider      string `json:"provider"`
	Type          string `json:"type"`
	Requests      int64  `json:"requests"`
	UpstreamCalls int64  `json:"upstream_calls"`
	Errors        int64  `json:"errors"`
	CacheHits     int64  `json:"cache_hits"`
	Coalesced     int64  `json:"coalesced"`
	// InFlight is the searches being answered now (waiting for their
	// upstream call or an identical one's).
	InFlight int64   `json:"in_flight"`
	HitRate  float64 `json:"hit_rate"`
	Latency  Latency `json:"latency_ms"`
}

// Latency is the percentiles of the last upstream calls, in milliseconds.
type Latency struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Samples int     `json:"samples"`
}

// Analytics is the answer of GET /v1/search/analytics.
type Analytics struct {
	Object    string              `json:"object"`
	Scope     string              `json:"scope"` // "replica"
	Since     time.Time           `json:"since"`
	Providers []ProviderAnalytics `json:"providers"`
	Totals    ProviderAnalytics   `json:"totals"`
}

// report is the figures of the configured providers, in their order;
// those of providers no longer configured are dropped.
func (a *analytics) report(conf []Configured) Analytics {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := Analytics{Object: "search.analytics", Scope: "replica", Since: a.since, Providers: []ProviderAnalytics{}}
	keep := map[string]bool{}
	var all []time.Duration
	for _, c := range conf {
		keep[c.ID] = true
		pa := ProviderAnalytics{Provider: c.ID, Type: c.Type}
		if p := a.by[c.ID]; p != nil {
			pa.Requests, pa.UpstreamCalls, pa.Errors, pa.CacheHits, pa.Coalesced = p.requests, p.upstream, p.errors, p.hits, p.coalesced
			pa.InFlight = p.inFlight
			pa.Latency = percentiles(p.lat)
			all = append(all, p.lat...)
		}
		pa.HitRate = rate(pa.CacheHits, pa.Requests)
		out.Providers = append(out.Providers, pa)
		t := &out.Totals
		t.Requests += pa.Requests
		t.UpstreamCalls += pa.UpstreamCalls
		t.Errors += pa.Errors
		t.CacheHits += pa.CacheHits
		t.Coalesced += pa.Coalesced
		t.InFlight += pa.InFlight
	}
	for id, p := range a.by {
		if !keep[id] && p.inFlight == 0 {
			delete(a.by, id)
		}
	}
	out.Totals.Provider = "*"
	out.Totals.HitRate = rate(out.Totals.CacheHits, out.Totals.Requests)
	out.Totals.Latency = percentiles(all)
	return out
}

func rate(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(of)*10000) / 10000
}

// percentiles are the nearest-rank p50 and p95 of lat.
func percentiles(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return math.Round(float64(s[max(i, 0)].Microseconds())) / 1000
	}
	return Latency{P50: at(0.50), P95: at(0.95), Samples: len(s)}
}

func (s *Service) analytics(w http.ResponseWriter, _ *http.Request, _ feature.RunOp) error {
	httpx.WriteJSON(w, http.StatusOK, s.stats.report(s.providers()))
	return nil
}
