package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type ctxKey struct{}

type reqState struct {
	id  string
	err error
}

func stateFrom(ctx context.Context) *reqState {
	s, _ := ctx.Value(ctxKey{}).(*reqState)
	return s
}

// RequestID returns the id the middleware gave the request, or "".
func RequestID(ctx context.Context) string {
	if s := stateFrom(ctx); s != nil {
		return s.id
	}
	return ""
}

var (
	idPrefix = func() string {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	idCounter atomic.Uint64
)

func newRequestID() string {
	return idPrefix + "-" + strconv.FormatUint(idCounter.Add(1), 36)
}

// Metrics are the request metrics of one HTTP server.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers request metrics labelled server=name on reg.
func NewMetrics(reg prometheus.Registerer, name string) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_http_requests_total", Help: "HTTP requests by route and status.",
			ConstLabels: prometheus.Labels{"server": name},
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omni_http_request_duration_seconds", Help: "HTTP request latency by route.",
			ConstLabels: prometheus.Labels{"server": name},
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer
// (flushing, hijacking for WebSockets).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush pushes buffered bytes to the client, so streaming handlers that
// look for http.Flusher (SSE, NDJSON) work through the middleware.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Wrap returns h with request ids (X-Request-Id, honoured when the client
// sends a sane one), panic recovery, request metrics and access logging.
// Successful requests are logged at debug level, client errors at info and
// server errors at error with their cause.
func Wrap(h http.Handler, log *slog.Logger, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 {
			id = newRequestID()
		}
		st := &reqState{id: id}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				st.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
				if sw.status == 0 {
					WriteError(sw, r, &Error{Status: 500, Code: "internal", Message: "internal server error", Err: st.err})
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			if m != nil {
				m.requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
				m.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
			}
			level := slog.LevelDebug
			switch {
			case status >= 500:
				level = slog.LevelError
			case status >= 400:
				level = slog.LevelInfo
			}
			if !log.Enabled(r.Context(), level) {
				return
			}
			attrs := []slog.Attr{
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Duration("elapsed", elapsed), slog.String("remote", r.RemoteAddr),
			}
			if st.err != nil {
				attrs = append(attrs, slog.String("err", st.err.Error()))
			}
			log.LogAttrs(r.Context(), level, "http request", attrs...)
		}()
		h.ServeHTTP(sw, r)
	})
}

// ClientIP returns the client address. When the peer is one of the
// trusted proxies, X-Forwarded-For (all its lines, in order) is walked from
// the right: the first entry that is not itself a trusted proxy is the
// client, as every proxy appends the address it saw and only the left part
// can be forged by the client. An unparsable entry stops the walk at the
// nearest trusted hop; when every entry is trusted the left-most is taken.
// With no trusted proxies (or an untrusted peer) the peer address is used.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	if len(trusted) == 0 {
		return peerHost(r)
	}
	peer := peerAddr(r)
	if !inNets(peer, trusted) {
		return peerHost(r)
	}
	last := peer
	vals := r.Header.Values("X-Forwarded-For")
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			j := len(v) - 1
			for j >= 0 && v[j] != ',' {
				j--
			}
			entry := trimSpace(v[j+1:])
			v = v[:max(j, 0)]
			if entry == "" {
				if j < 0 {
					break
				}
				continue
			}
			a, err := netip.ParseAddr(entry)
			if err != nil {
				return last.String()
			}
			a = a.Unmap()
			if !inNets(a, trusted) {
				return a.String()
			}
			last = a
			if j < 0 {
				break
			}
		}
	}
	return last.String()
}

// TrustedPeer reports whether the request's peer is a trusted proxy, so its
// X-Forwarded-* headers may be believed.
func TrustedPeer(r *http.Request, trusted []netip.Prefix) bool {
	return len(trusted) > 0 && inNets(peerAddr(r), trusted)
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// peerHost is the host part of RemoteAddr (a substring: no allocation on
// the hot path).
func peerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func inNets(a netip.Addr, nets []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
