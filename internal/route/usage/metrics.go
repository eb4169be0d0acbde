package usage

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store"
)

// metricSet holds the gateway's request metrics. They are updated by the
// writer goroutine as records leave the queue, so the request path pays
// only for the queue send.
type metricSet struct {
	requests    *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	cost        *prometheus.CounterVec
	units       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	dropped     prometheus.Counter
	writeFailed prometheus.Counter

	// labelled holds the (provider, model) pairs that have their own
	// label values, at most maxModelLabels; the writer goroutine alone
	// uses it.
	labelled map[[2]string]struct{}
}

// maxModelLabels bounds the target models labelled in the metrics: a
// model name under a configured provider is the client's choice, so
// later ones are counted as "other".
const maxModelLabels = 1000

var latencyBuckets = []float64{.05, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60, 120, 300}

func newMetrics() *metricSet {
	return &metricSet{
		labelled: map[[2]string]struct{}{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniroute_requests_total", Help: "Routed requests by provider, target model, HTTP status (provider \"\" when none was reached) and modality (chat, rerank, moderation, image, audio, search, video, music).",
		}, []string{"provider", "model", "status", "modality"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniroute_tokens_total", Help: "Tokens by direction: input, output, cache_read, cache_write, reasoning (part of output).",
		}, []string{"provider", "model", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniroute_cost_usd_total", Help: "Priced cost of routed requests in USD.",
		}, []string{"provider", "model"}),
		units: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniroute_units_total", Help: "What the modalities beyond chat used, in their own units (document, input, image, second, character, search).",
		}, []string{"provider", "model", "modality", "unit"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omniroute_request_duration_seconds", Help: "Time until the answer was complete.", Buckets: latencyBuckets,
		}, []string{"provider"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omniroute_time_to_first_token_seconds", Help: "Time until the first byte of the answer.", Buckets: latencyBuckets,
		}, []string{"provider"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniroute_usage_records_dropped_total", Help: "Usage records dropped because the write queue was full.",
		}),
		writeFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "omniroute_usage_records_write_failed_total", Help: "Usage records lost because the database write failed.",
		}),
	}
}

func (m *metricSet) register(reg prometheus.Registerer, log *slog.Logger) {
	for _, c := range []prometheus.Collector{m.requests, m.tokens, m.cost, m.units, m.latency, m.ttft, m.dropped, m.writeFailed} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				log.Warn("usage metric not registered", "err", err)
			}
		}
	}
}

func (m *metricSet) observe(rec *store.UsageRecord, o pipeline.Outcome) {
	p, model := rec.Provider, m.label(rec.Provider, rec.TargetModel)
	modality := rec.Modality // one of the gateway's own modalities, never the client's word
	if modality == "" {
		modality = "chat"
	}
	m.requests.WithLabelValues(p, model, strconv.Itoa(rec.Status), modality).Inc()
	if rec.Cache == "HIT" || rec.Idempotent {
		return // nothing went upstream
	}
	if rec.Unit != "" && rec.Quantity > 0 && p != "" {
		m.units.WithLabelValues(p, model, modality, rec.Unit).Add(float64(rec.Quantity))
	}
	for _, d := range [...]struct {
		dir string
		n   int64
	}{{"input", rec.InputTokens}, {"output", rec.OutputTokens}, {"cache_read", rec.CacheReadTokens},
		{"cache_write", rec.CacheWriteTokens}, {"reasoning", rec.ReasoningTokens}} {
		if d.n > 0 {
			m.tokens.WithLabelValues(p, model, d.dir).Add(float64(d.n))
		}
	}
	if rec.CostUSD > 0 {
		m.cost.WithLabelValues(p, model).Add(rec.CostUSD)
	}
	if p != "" {
		m.latency.WithLabelValues(p).Observe(o.Latency.Seconds())
		if rec.Status < 400 {
			m.ttft.WithLabelValues(p).Observe(o.TTFT.Seconds())
		}
	}
}

// label is the model label of a (provider, model) pair: the model while
// fewer than maxModelLabels pairs have one, else "other".
func (m *metricSet) label(provider, model string) string {
	k := [2]string{provider, model}
	if _, ok := m.labelled[k]; ok {
		return model
	}
	if len(m.labelled) >= maxModelLabels {
		return "other"
	}
	m.labelled[k] = struct{}{}
	return model
}
