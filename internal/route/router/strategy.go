package router

import (
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Combo strategies.
const (
	StrategyPriority      = "priority"       // declared order
	StrategyWeighted      = "weighted"       // weighted random first pick, rest by weight
	StrategyRoundRobin    = "round-robin"    // rotate the first pick per request
	StrategyLeastUsed     = "least-used"     // fewest requests so far first
	StrategyCostOptimized = "cost-optimized" // cheapest first (needs prices)
	StrategyLatency       = "latency"        // lowest p95 latency first
)

// Strategies lists every known strategy.
var Strategies = []string{StrategyPriority, StrategyWeighted, StrategyRoundRobin, StrategyLeastUsed, StrategyCostOptimized, StrategyLatency}

// ValidStrategy reports whether s names a strategy.
func ValidStrategy(s string) bool { return slices.Contains(Strategies, s) }

// Pricer gives the cost of a target, per million input and output tokens;
// ok is false when the price is unknown (sorted last).
type Pricer interface {
	Price(provider, model string) (in, out float64, ok bool)
}

// SetPricer installs prices for the cost-optimized strategy.
func (r *Router) SetPricer(p Pricer) { r.pricer.Store(&p) }

// order returns the targets in the order the strategy tries them. Every
// target stays in the list: the strategy only decides who goes first.
func (r *Router) order(key string, targets []Target, strategy string) []Target {
	if len(targets) <= 1 {
		return targets
	}
	out := slices.Clone(targets)
	switch strategy {
	case StrategyRoundRobin:
		n := int(r.combos.next(key) % uint64(len(out)))
		out = append(out[n:], out[:n]...)
	case StrategyWeighted:
		out = weightedOrder(out)
	case StrategyLeastUsed:
		sort.SliceStable(out, func(i, j int) bool { return r.stats.Count(out[i].String()) < r.stats.Count(out[j].String()) })
	case StrategyLatency:
		sort.SliceStable(out, func(i, j int) bool {
			pi, oki := r.stats.P95(out[i].String())
			pj, okj := r.stats.P95(out[j].String())
			if oki != okj {
				return !oki // unmeasured targets get measured first
			}
			return pi < pj
		})
	case StrategyCostOptimized:
		if p := r.pricer.Load(); p != nil && *p != nil {
			cost := func(t Target) (float64, bool) {
				in, o, ok := (*p).Price(t.Provider, t.Model)
				return in + o, ok
			}
			sort.SliceStable(out, func(i, j int) bool {
				ci, oki := cost(out[i])
				cj, okj := cost(out[j])
				if oki != okj {
					return oki
				}
				return ci < cj
			})
		}
	}
	return out
}

// maxRotations bounds the round-robin positions kept: they are keyed by
// the model name as the client sent it, and a glob mapping leads any
// number of names to one combo.
const maxRotations = 1024

// rotations are the round-robin positions by model name, each an atomic
// counter: a known name rotates without a lock. At the bound they all
// start again from the first target.
type rotations struct {
	m sync.Map     // model name -> *atomic.Uint64
	n atomic.Int64 // names in m (about: a reset races with adds)
}

// next returns the position for key and advances it.
func (r *rotations) next(key string) uint64 {
	if v, ok := r.m.Load(key); ok {
		return v.(*atomic.Uint64).Add(1) - 1
	}
	if r.n.Load() >= maxRotations {
		r.m.Clear()
		r.n.Store(0)
	}
	v, loaded := r.m.LoadOrStore(key, new(atomic.Uint64))
	if !loaded {
		r.n.Add(1)
	}
	return v.(*atomic.Uint64).Add(1) - 1
}

// len counts the names with a position.
func (r *rotations) len() int {
	n := 0
	r.m.Range(func(any, any) bool { n++; return true })
	return n
}

// weightedOrder draws targets without replacement, each with probability
// proportional to its weight (weight <= 0 counts as 1).
func weightedOrder(ts []Target) []Target {
	out := make([]Target, 0, len(ts))
	rest := slices.Clone(ts)
	for len(rest) > 0 {
		total := 0
		for _, t := range rest {
			total += max(1, t.Weight)
		}
		n := rand.IntN(total)
		for i, t := range rest {
			n -= max(1, t.Weight)
			if n < 0 {
				out = append(out, t)
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
		}
	}
	return out
}

// maxTargetStats bounds the targets with statistics: a model name under
// a configured provider is the client's to choose.
const maxTargetStats = 1024

// Stats keeps per-target request counts and a window of recent latencies,
// for at most maxTargetStats targets: at the bound, the least recently
// used half is dropped (combo targets, in use, keep theirs).
type Stats struct {
	mu    sync.Mutex
	m     map[string]*targetStats
	clock uint64 // Record calls so far: the recency of an entry
}

type targetStats struct {
	count, failures int64
	lat             [128]time.Duration
	n               int
	used            uint64 // the clock at its last Record
}

// NewStats returns empty statistics.
func NewStats() *Stats { return &Stats{m: map[string]*targetStats{}} }

// Record notes one attempt at key.
func (s *Stats) Record(key string, elapsed time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock++
	t := s.m[key]
	if t == nil {
		if len(s.m) >= maxTargetStats {
			s.evict()
		}
		t = &targetStats{}
		s.m[key] = t
	}
	t.used = s.clock
	t.count++
	if !ok {
		t.failures++
		return
	}
	t.lat[t.n%len(t.lat)] = elapsed
	t.n++
}

// evict drops the least recently used half; the caller holds mu.
func (s *Stats) evict() {
	used := make([]uint64, 0, len(s.m))
	for _, t := range s.m {
		used = append(used, t.used)
	}
	slices.Sort(used)
	cut := used[len(used)/2]
	for k, t := range s.m {
		if t.used <= cut {
			delete(s.m, k)
		}
	}
}

// Count returns the attempts made at key.
func (s *Stats) Count(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.m[key]; t != nil {
		return t.count
	}
	return 0
}

// P95 returns the 95th percentile of the recent successful latencies.
func (s *Stats) P95(key string) (time.Duration, bool) {
	s.mu.Lock()
	t := s.m[key]
	if t == nil || t.n == 0 {
		s.mu.Unlock()
		return 0, false
	}
	n := min(t.n, len(t.lat))
	lat := slices.Clone(t.lat[:n])
	s.mu.Unlock()
	slices.Sort(lat)
	return lat[(n*95+99)/100-1], true
}
