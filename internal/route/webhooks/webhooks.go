// Package webhooks owns the gateway's outbound webhooks: the
// subscriptions under /api/webhooks (URL, event types, sealed signing
// secret), the events.Publisher every emitting module is given, the
// durable delivery queue in SQL (gateway_webhook_deliveries) worked by a
// bounded pool under leases, so replicas sharing a database deliver each
// event once, retried with backoff for about a day, signed as the
// Standard Webhooks specification says; and the request.failed event
// (a Record gate).
package webhooks

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
)

// Caps and defaults.
const (
	MaxWebhooks       = 100     // stored webhooks
	MaxEvents         = 64      // entries of one webhook's events list
	MaxURL            = 2048    // bytes of a webhook URL
	MaxDescription    = 500     // characters of a description
	DefaultBuffer     = 4096    // events waiting in memory to be written
	DefaultMaxPending = 100_000 // pending deliveries in the database
	DefaultWorkers    = 8       // deliveries attempted at once by one replica
	DefaultTimeout    = 10 * time.Second
	TestTimeout       = 5 * time.Second
	DefaultRetention  = 7 * 24 * time.Hour
	maxResponseRead   = 4 << 10 // bytes of an endpoint's answer read
	maxLastError      = 300     // characters of a delivery's last error kept
	secretKeyPurpose  = "omni route webhook secrets v1"
)

// Schedule is the wait before each retry: after the last one fails the
// delivery is failed (about 24 h after the event).
var Schedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour}

// Options configure the module.
type Options struct {
	DB        *sqldb.DB // required
	MasterKey []byte    // seals the signing secrets (required)
	Clock     clock.Clock
	Log       *slog.Logger
	// HTTP sends deliveries (default: no redirects followed, proxies from
	// the environment, DefaultTimeout).
	HTTP *http.Client
	// Metrics, when set, gets the counters of dropped and delivered events.
	Metrics prometheus.Registerer

	Buffer     int           // default DefaultBuffer
	MaxPending int           // default DefaultMaxPending
	Workers    int           // default DefaultWorkers
	Timeout    time.Duration // of one delivery attempt; default DefaultTimeout
	Retention  time.Duration // of delivered and failed deliveries; default DefaultRetention
	// Poll is how often due deliveries are looked for (default 1 s), and
	// Reload how often the webhooks are re-read for the changes of other
	// replicas (default 5 s).
	Poll, Reload time.Duration
	// Lease is how long a claimed delivery is held (default twice Timeout).
	Lease time.Duration
	// Jitter returns a factor in [0.9, 1.1) applied to each retry wait
	// (tests fix it).
	Jitter func() float64
}

// Service is the webhooks module.
type Service struct {
	opt    Options
	st     *store
	sealer *auth.Sealer
	clk    clock.Clock
	log    *slog.Logger
	client *http.Client
	owner  string

	queue   chan events.Event
	hooks   atomic.Pointer[hookSet] // the subscriptions, secrets opened
	dropped prometheus.Counter
	drops   atomic.Int64
	sent    prometheus.Counter

	reloadMu sync.Mutex
	kick     chan struct{}
}

// hookSet is the webhooks as delivery needs them.
type hookSet struct {
	byID  map[string]*hook
	types map[string][]*hook // event type → subscribers ("*" ones included)
}

type hook struct {
	ID, URL string
	Key     []byte // the signing key (the secret's base64 part, decoded)
}

// New builds the module; Init loads the webhooks.
func New(opt Options) (*Service, error) {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opt.Buffer, DefaultBuffer)
	def(&opt.MaxPending, DefaultMaxPending)
	def(&opt.Workers, DefaultWorkers)
	defD(&opt.Timeout, DefaultTimeout)
	defD(&opt.Retention, DefaultRetention)
	defD(&opt.Poll, time.Second)
	defD(&opt.Reload, 5*time.Second)
	defD(&opt.Lease, 2*opt.Timeout)
	if opt.Jitter == nil {
		opt.Jitter = jitter
	}
	sealer, err := auth.NewSealer(auth.DeriveKey(opt.MasterKey, secretKeyPurpose))
	if err != nil {
		return nil, err
	}
	client := opt.HTTP
	if client == nil {
		client = NewClient(opt.Timeout)
	}
	s := &Service{opt: opt, st: &store{db: opt.DB}, sealer: sealer, clk: opt.Clock, log: opt.Log, client: client,
		owner: auth.RandomToken("whw_", 9), queue: make(chan events.Event, opt.Buffer), kick: make(chan struct{}, 1),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "omniroute_webhook_events_dropped_total",
			Help: "Webhook events dropped because the in-memory queue was full or too many deliveries were pending."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "omniroute_webhook_deliveries_total",
			Help: "Webhook delivery attempts that the endpoint accepted."}),
	}
	s.hooks.Store(&hookSet{byID: map[string]*hook{}, types: map[string][]*hook{}})
	if opt.Metrics != nil {
		for _, c := range []prometheus.Collector{s.dropped, s.sent} {
			if err := opt.Metrics.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					opt.Log.Warn("webhook metric not registered", "err", err)
				}
			}
		}
	}
	return s, nil
}

// NewClient is the HTTP client deliveries are sent with: redirects are
// not followed (a 3xx is a failed attempt) and every attempt ends after
// timeout.
func NewClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Module is the webhooks as a gateway feature: the management routes,
// the request.failed gate, the schema and the delivery loop.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "webhooks",
		Package:    "route/webhooks",
		Admin:      func(a feature.Admin) { s.Register(a.Guarded) },
		Stage:      feature.Stage{Gate: gate{s}, Order: feature.Record},
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Init:       s.reload,
		Run:        s.Run,
		Lifetime:   feature.Settling,
	}
}

// Dropped is how many events were dropped so far (queue full, too many
// pending deliveries).
func (s *Service) Dropped() int64 { return s.drops.Load() }

func (s *Service) drop(n int) {
	s.drops.Add(int64(n))
	s.dropped.Add(float64(n))
}

// Subscribed reports whether any webhook listens to event type t.
func (s *Service) Subscribed(t string) bool { return len(s.hooks.Load().types[t]) > 0 }

// Publish implements events.Publisher: an event some webhook listens to
// is queued in memory for the writer; when the queue is full it is
// dropped and counted. It never blocks.
func (s *Service) Publish(_ context.Context, e events.Event) {
	if !s.Subscribed(e.Type) {
		return
	}
	if e.At.IsZero() {
		e.At = s.clk.Now()
	}
	select {
	case s.queue <- e:
	default:
		s.drop(1)
	}
}

// reload reads the webhooks and opens their secrets.
func (s *Service) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rows, err := s.st.hooks(ctx)
	if err != nil {
		return err
	}
	set := &hookSet{byID: map[string]*hook{}, types: map[string][]*hook{}}
	for _, r := range rows {
		key, err := s.openKey(r)
		if err != nil {
			s.log.Warn("a webhook's secret cannot be opened (master key changed?)", "webhook", r.ID)
			continue
		}
		h := &hook{ID: r.ID, URL: r.URL, Key: key}
		set.byID[r.ID] = h
		for _, t := range r.Events {
			if t == "*" {
				for _, t := range events.Types {
					set.types[t] = append(set.types[t], h)
				}
				continue
			}
			set.types[t] = append(set.types[t], h)
		}
	}
	for t, hs := range set.types { // a webhook listed "*" and the type itself: once
		seen := map[string]bool{}
		out := hs[:0]
		for _, h := range hs {
			if !seen[h.ID] {
				seen[h.ID] = true
				out = append(out, h)
			}
		}
		set.types[t] = out
	}
	s.hooks.Store(set)
	return nil
}

func (s *Service) openKey(r hookRow) ([]byte, error) {
	secret, err := s.sealer.Open(r.Secret, []byte(r.ID))
	if err != nil {
		return nil, err
	}
	return secretKey(string(secret))
}
