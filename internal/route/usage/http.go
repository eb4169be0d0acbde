package usage

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// Windows of the read endpoints.
const (
	TelemetryWindow  = time.Hour        // latency percentiles cover the last hour …
	TelemetrySamples = 20000            // … at most this many most recent requests
	SessionWindow    = 30 * time.Minute // a session is active when seen this recently
	MonitoredWindow  = time.Hour        // a provider is monitored when it served this recently
	maxLogLimit      = 1000
	maxSessionRows   = 50000
	maxRetentionDays = 3650
)

// Register adds the usage endpoints; add is admin.Guard.Guarded(mux), so they
// sit behind the management login.
func (r *Recorder) Register(add func(pattern string, h httpx.HandlerFunc)) {
	add("GET /api/usage/history", r.history)
	add("GET /api/usage/logs", r.logs)
	add("GET /api/usage/request-logs", r.requestLogs)
	add("GET /api/usage/tail", r.tail)
	add("GET /api/usage/groups", r.groups)
	add("GET /api/usage/{connectionId}", r.connectionUsage)
	add("GET /api/telemetry/summary", r.telemetry)
	add("GET /api/monitoring/health", r.health)
	add("GET /api/sessions", r.sessions)
	add("GET /api/settings/usage-retention", r.getRetention)
	add("PUT /api/settings/usage-retention", r.putRetention)
}

var periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "90d": 90 * 24 * time.Hour}

func filterFrom(q map[string][]string) store.UsageFilter {
	get := func(names ...string) string {
		for _, n := range names {
			if v := q[n]; len(v) > 0 && v[0] != "" {
				return v[0]
			}
		}
		return ""
	}
	return store.UsageFilter{Model: get("model"), Provider: get("provider"), KeyID: get("apiKeyId", "api_key_id"),
		Connection: get("connectionId", "connection"), Session: get("sessionId", "session"), Modality: get("modality")}
}

type historyBody struct {
	Period  string              `json:"period"`
	GroupBy string              `json:"groupBy"`
	From    time.Time           `json:"from"`
	To      time.Time           `json:"to"`
	Buckets []store.UsageBucket `json:"buckets"`
	Totals  store.UsageTotals   `json:"totals"`
}

func (r *Recorder) history(w http.ResponseWriter, req *http.Request) error {
	q := req.URL.Query()
	period := q.Get("period")
	if period == "" {
		period = "7d"
	}
	span, ok := periods[period]
	if !ok {
		return httpx.BadRequest("period must be one of 1h, 24h, 7d, 30d, 90d")
	}
	groupBy := q.Get("groupBy")
	if groupBy == "" {
		groupBy = "day"
		if span <= 24*time.Hour {
			groupBy = "hour"
		}
	}
	var width time.Duration
	switch groupBy {
	case "hour":
		width = time.Hour
	case "day":
		width = 24 * time.Hour
	default:
		return httpx.BadRequest("groupBy must be hour or day")
	}
	if span/width > 24*31 {
		return httpx.BadRequest("too many buckets: group %s by day", period)
	}
	now := r.opt.Clock.Now().UTC()
	f := filterFrom(q)
	f.Since = now.Add(-span).Truncate(width)
	got, err := r.opt.Store.UsageBuckets(req.Context(), f, width)
	if err != nil {
		return err
	}
	totals, err := r.opt.Store.UsageTotals(req.Context(), f)
	if err != nil {
		return err
	}
	// Every bucket of the period, empty ones as zeros.
	byStart := make(map[int64]store.UsageBucket, len(got))
	for _, b := range got {
		byStart[b.Start.UnixMilli()] = b
	}
	var buckets []store.UsageBucket
	for t := f.Since; !t.After(now); t = t.Add(width) {
		b, ok := byStart[t.UnixMilli()]
		if !ok {
			b = store.UsageBucket{Start: t}
		}
		buckets = append(buckets, b)
	}
	httpx.WriteJSON(w, http.StatusOK, historyBody{Period: period, GroupBy: groupBy, From: f.Since, To: now, Buckets: buckets, Totals: totals})
	return nil
}

// maxGroups is how many providers, models or keys /api/usage/groups lists.
const maxGroups = 50

// groups sums the period's records per provider, model or key.
func (r *Recorder) groups(w http.ResponseWriter, req *http.Request) error {
	q := req.URL.Query()
	period := q.Get("period")
	if period == "" {
		period = "7d"
	}
	span, ok := periods[period]
	if !ok {
		return httpx.BadRequest("period must be one of 1h, 24h, 7d, 30d, 90d")
	}
	by := q.Get("by")
	switch by {
	case "provider", "model", "key", "modality", "unit":
	default:
		return httpx.BadRequest("by must be provider, model, key, modality or unit")
	}
	f := filterFrom(q)
	f.Since = r.opt.Clock.Now().UTC().Add(-span)
	gs, err := r.opt.Store.UsageGroups(req.Context(), f, by, maxGroups)
	if err != nil {
		return err
	}
	if gs == nil {
		gs = []store.UsageGroup{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"period": period, "by": by, "groups": gs})
	return nil
}

type logsBody struct {
	Logs       any   `json:"logs"`
	Limit      int   `json:"limit"`
	Offset     int   `json:"offset"`
	NextCursor int64 `json:"nextCursor,omitempty"` // pass as ?cursor= for the next page
}

func (r *Recorder) page(req *http.Request) ([]store.UsageRecord, logsBody, error) {
	q := req.URL.Query()
	intParam := func(name string, def, lo, hi int) (int, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, httpx.BadRequest("%s must be an integer from %d to %d", name, lo, hi)
		}
		return n, nil
	}
	limit, err := intParam("limit", 50, 1, maxLogLimit)
	if err != nil {
		return nil, logsBody{}, err
	}
	offset, err := intParam("offset", 0, 0, math.MaxInt32)
	if err != nil {
		return nil, logsBody{}, err
	}
	f := filterFrom(q)
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil || n <= 0 {
			return nil, logsBody{}, httpx.BadRequest("cursor must be a positive integer")
		}
		f.Before = n
	}
	if p := q.Get("period"); p != "" {
		span, ok := periods[p]
		if !ok {
			return nil, logsBody{}, httpx.BadRequest("period must be one of 1h, 24h, 7d, 30d, 90d")
		}
		f.Since = r.opt.Clock.Now().Add(-span)
	}
	recs, err := r.opt.Store.UsageLogs(req.Context(), f, limit, offset)
	if err != nil {
		return nil, logsBody{}, err
	}
	b := logsBody{Limit: limit, Offset: offset}
	if len(recs) == limit {
		b.NextCursor = recs[len(recs)-1].ID
	}
	return recs, b, nil
}

func (r *Recorder) logs(w http.ResponseWriter, req *http.Request) error {
	recs, b, err := r.page(req)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []store.UsageRecord{}
	}
	b.Logs = recs
	httpx.WriteJSON(w, http.StatusOK, b)
	return nil
}

// requestLog is a record with its fallback attempts.
type requestLog struct {
	store.UsageRecord
	AttemptList json.RawMessage `json:"attemptList"`
}

func (r *Recorder) requestLogs(w http.ResponseWriter, req *http.Request) error {
	recs, b, err := r.page(req)
	if err != nil {
		return err
	}
	out := make([]requestLog, len(recs))
	for i, rec := range recs {
		aj := rec.AttemptsJSON
		if !json.Valid([]byte(aj)) {
			aj = "[]"
		}
		out[i] = requestLog{UsageRecord: rec, AttemptList: json.RawMessage(aj)}
	}
	b.Logs = out
	httpx.WriteJSON(w, http.StatusOK, b)
	return nil
}

type connectionBody struct {
	ConnectionID string `json:"connectionId"`
	Period       string `json:"period"`
	store.UsageTotals
	LastUsed *time.Time `json:"lastUsed"`
}

func (r *Recorder) connectionUsage(w http.ResponseWriter, req *http.Request) error {
	id := req.PathValue("connectionId")
	period := req.URL.Query().Get("period")
	f := store.UsageFilter{Connection: id}
	if period == "" {
		period = "all"
	} else {
		span, ok := periods[period]
		if !ok {
			return httpx.BadRequest("period must be one of 1h, 24h, 7d, 30d, 90d")
		}
		f.Since = r.opt.Clock.Now().Add(-span)
	}
	t, err := r.opt.Store.UsageTotals(req.Context(), f)
	if err != nil {
		return err
	}
	body := connectionBody{ConnectionID: id, Period: period, UsageTotals: t}
	if t.Requests > 0 {
		last, ok, err := r.opt.Store.UsageLastAt(req.Context(), f)
		if err != nil {
			return err
		}
		if ok {
			body.LastUsed = &last
		}
	}
	httpx.WriteJSON(w, http.StatusOK, body)
	return nil
}

// Percentiles are latency percentiles of one provider, in milliseconds.
type Percentiles struct {
	P50   int64 `json:"p50"`
	P95   int64 `json:"p95"`
	P99   int64 `json:"p99"`
	Count int   `json:"count"`
}

// percentiles uses the nearest-rank method over latencies (sorted here).
func percentiles(lat []int64) Percentiles {
	slices.Sort(lat)
	rank := func(p float64) int64 {
		i := int(math.Ceil(p/100*float64(len(lat)))) - 1
		return lat[max(i, 0)]
	}
	if len(lat) == 0 {
		return Percentiles{}
	}
	return Percentiles{P50: rank(50), P95: rank(95), P99: rank(99), Count: len(lat)}
}

func (r *Recorder) telemetry(w http.ResponseWriter, req *http.Request) error {
	samples, err := r.opt.Store.UsageLatencies(req.Context(), r.opt.Clock.Now().Add(-TelemetryWindow), TelemetrySamples)
	if err != nil {
		return err
	}
	byProvider := map[string][]int64{}
	for _, s := range samples {
		byProvider[s.Provider] = append(byProvider[s.Provider], s.LatencyMS)
	}
	out := make(map[string]Percentiles, len(byProvider))
	for p, lat := range byProvider {
		out[p] = percentiles(lat)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"providers": out})
	return nil
}

// Health is the monitoring summary.
type Health struct {
	Status          string `json:"status"` // "ok", or "degraded": no provider is active, or usage cannot be read
	CatalogCount    int    `json:"catalogCount"`
	ConfiguredCount int    `json:"configuredCount"`
	ActiveCount     int    `json:"activeCount"`
	MonitoredCount  int    `json:"monitoredCount"`
	Queued          int    `json:"usageQueued"`
	Dropped         uint64 `json:"usageDropped"`
	// Breakers are the provider circuit breakers that are open, half-open
	// or counting failures; OpenBreakers counts the open ones.
	Breakers     []Breaker `json:"breakers"`
	OpenBreakers int       `json:"openBreakers"`
	Error        string    `json:"error,omitempty"`
}

// Breaker is one provider's circuit breaker as the health check shows it.
type Breaker struct {
	Provider            string     `json:"provider"`
	State               string     `json:"state"` // closed (counting failures), open, half-open
	ConsecutiveFailures int        `json:"consecutiveFailures"`
	OpenUntil           *time.Time `json:"openUntil,omitempty"`
	LastStatus          int        `json:"lastStatus"`
}

func (r *Recorder) health(w http.ResponseWriter, req *http.Request) error {
	h := Health{Status: "ok", CatalogCount: r.opt.CatalogCount, Queued: r.queued(), Dropped: r.dropped.Load(), Breakers: []Breaker{}}
	if r.opt.Breakers != nil {
		if bs := r.opt.Breakers(); bs != nil {
			h.Breakers = bs
		}
		for _, b := range h.Breakers {
			if b.State == "open" {
				h.OpenBreakers++
			}
		}
	}
	if r.opt.Providers != nil {
		ps, err := r.opt.Providers(req.Context())
		if err != nil {
			return err
		}
		h.ConfiguredCount = len(ps)
		for _, p := range ps {
			if p.Active {
				h.ActiveCount++
			}
		}
	}
	monitored, err := r.opt.Store.UsageProviders(req.Context(), r.opt.Clock.Now().Add(-MonitoredWindow))
	if err != nil {
		h.Status, h.Error = "degraded", "usage records cannot be read"
		r.opt.Log.Warn("health: reading usage failed", "err", err)
	}
	h.MonitoredCount = len(monitored)
	if h.ActiveCount == 0 {
		h.Status = "degraded"
	}
	httpx.WriteJSON(w, http.StatusOK, h)
	return nil
}

// Session is an active sticky session.
type Session struct {
	ID       string    `json:"sessionId"`
	KeyID    string    `json:"apiKeyId"`
	Provider string    `json:"provider"` // of the last request that reached one
	Model    string    `json:"model"`
	Requests int       `json:"requests"`
	LastSeen time.Time `json:"lastSeen"`
}

func (r *Recorder) sessions(w http.ResponseWriter, req *http.Request) error {
	rows, err := r.opt.Store.UsageSessionRows(req.Context(), r.opt.Clock.Now().Add(-SessionWindow), maxSessionRows)
	if err != nil {
		return err
	}
	type key struct{ id, keyID string }
	by := map[key]*Session{}
	for _, row := range rows { // oldest first
		k := key{row.Session, row.KeyID}
		s := by[k]
		if s == nil {
			s = &Session{ID: row.Session, KeyID: row.KeyID}
			by[k] = s
		}
		s.Requests++
		if row.At.After(s.LastSeen) {
			s.LastSeen = row.At
		}
		if row.Provider != "" {
			s.Provider, s.Model = row.Provider, row.TargetModel
		}
	}
	out := make([]Session, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Session) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"sessions": out, "count": len(out), "windowMinutes": int(SessionWindow / time.Minute)})
	return nil
}

type retentionBody struct {
	Days int `json:"days"`
}

func (r *Recorder) getRetention(w http.ResponseWriter, req *http.Request) error {
	d, err := r.Retention(req.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, retentionBody{Days: int(d / (24 * time.Hour))})
	return nil
}

func (r *Recorder) putRetention(w http.ResponseWriter, req *http.Request) error {
	var b retentionBody
	if err := httpx.DecodeJSON(w, req, &b, 1<<16); err != nil {
		return err
	}
	if b.Days < 1 || b.Days > maxRetentionDays {
		return httpx.BadRequest("days must be from 1 to %d", maxRetentionDays)
	}
	if err := r.opt.Store.SetSetting(req.Context(), store.SettingUsageRetentionDays, strconv.Itoa(b.Days)); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, b)
	return nil
}
