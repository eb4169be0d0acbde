package upstreamhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits bound what is read of an upstream's answers. Zero fields take
// the defaults.
type Limits struct {
	// MaxBody bounds a non-streamed answer (default 32 MiB); requests
	// marked with LargeAnswer may get 8 times as much.
	MaxBody int64
	// MaxLine bounds one line of a streamed answer (text/event-stream or
	// NDJSON; default 4 MiB).
	MaxLine int
	// IdleTimeout bounds the wait for more bytes once an answer's body
	// has started (default 2 minutes).
	IdleTimeout time.Duration
	// FirstByteTimeout bounds the wait for the first byte of a body
	// after the headers (default 10 minutes, the time an upstream gets
	// to start answering).
	FirstByteTimeout time.Duration
	// Log, when set, gets a warning each time a limit cuts an answer
	// (with the upstream's host, which clients are not told).
	Log *slog.Logger
}

// Defaults.
const (
	DefaultMaxBody          = 32 << 20
	DefaultMaxLine          = 4 << 20
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultFirstByteTimeout = 10 * time.Minute
	largeAnswerFactor       = 8
)

func (l Limits) withDefaults() Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultMaxLine
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.FirstByteTimeout <= 0 {
		l.FirstByteTimeout = DefaultFirstByteTimeout
	}
	return l
}

type (
	largeKey    struct{}
	streamedKey struct{}
)

// Streamed marks ctx as a streamed request: an answer that comes as a
// stream (text/event-stream or NDJSON) is bounded per line
// (Limits.MaxLine), not in total. Answers to requests not so marked are
// bounded in total (Limits.MaxBody) whatever their content type says.
func Streamed(ctx context.Context) context.Context {
	return context.WithValue(ctx, streamedKey{}, true)
}

// LargeAnswer marks ctx as a request whose answer may be large by
// nature (embedding vectors as JSON numbers): its body may be 8 times
// Limits.MaxBody.
func LargeAnswer(ctx context.Context) context.Context {
	return context.WithValue(ctx, largeKey{}, true)
}

// Bounded returns a copy of hc (a client with http.DefaultTransport when
// nil) that never follows redirects and whose answers are bounded by l:
// reading past a limit, or waiting past a timeout, fails the read with
// an error that names the limit. Read errors of the connection itself
// are described without addresses.
func Bounded(hc *http.Client, l Limits) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	}
	base := c.Transport
	if t, ok := base.(*transport); ok {
		base = t.base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &transport{base: base, l: l.withDefaults()}
	c.CheckRedirect = refuseRedirect
	return &c
}

// Rebase returns a copy of hc (a client with http.DefaultTransport when
// nil) whose transport is wrap of its own; a Bounded client stays
// bounded by the same limits, wrap changing only what sends under them
// (an outbound proxy's transport).
func Rebase(hc *http.Client, wrap func(base http.RoundTripper) http.RoundTripper) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	}
	if t, ok := c.Transport.(*transport); ok {
		c.Transport = &transport{base: wrap(t.base), l: t.l}
		return &c
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = wrap(base)
	return &c
}

// refuseRedirect makes a client return a 3xx answer as it is.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

type transport struct {
	base http.RoundTripper
	l    Limits
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	b := &body{rc: resp.Body, ctx: req.Context(), first: t.l.FirstByteTimeout, idle: t.l.IdleTimeout, log: t.l.Log, host: req.URL.Host}
	b.max, b.maxLine = t.l.caps(req.Context(), resp.Header.Get("Content-Type"))
	resp.Body = b
	return resp, nil
}

// caps chooses how an answer is bounded — the one place that does: a
// stream answering a request marked Streamed is bounded per line
// (perLine: MaxLine); every other answer in total (total: MaxBody, times
// 8 for a LargeAnswer), so an upstream cannot lift the total cap of a
// plain request by calling its answer a stream.
func (l Limits) caps(ctx context.Context, contentType string) (total int64, perLine int) {
	if v, _ := ctx.Value(streamedKey{}).(bool); v && isStream(contentType) {
		return 0, l.MaxLine
	}
	total = l.MaxBody
	if v, _ := ctx.Value(largeKey{}).(bool); v {
		total *= largeAnswerFactor
	}
	return total, 0
}

// isStream reports the content types of streamed answers.
func isStream(ct string) bool {
	mt, _, _ := mime.ParseMediaType(ct)
	switch mt {
	case "text/event-stream", "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
		return true
	}
	return false
}

// body bounds one answer's body.
type body struct {
	rc      io.ReadCloser
	ctx     context.Context
	max     int64 // > 0: bytes a non-streamed answer may have
	maxLine int   // > 0: bytes a line of a stream may have
	read    int64
	line    int // bytes since the last line end
	first   time.Duration
	idle    time.Duration
	started bool
	log     *slog.Logger
	host    string
	timer   *time.Timer
	expired atomic.Bool
	err     error // sticky
}

// Errors of bounded bodies; their messages reach clients.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	wait := b.idle
	if !b.started {
		wait = b.first
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(wait, b.expire)
	} else {
		b.timer.Reset(wait)
	}
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if b.expired.Load() { // the timer closed the body
		if b.started {
			b.err = &limitError{fmt.Sprintf("the upstream sent nothing for %s", wait)}
		} else {
			b.err = &limitError{fmt.Sprintf("the upstream sent no answer body for %s", wait)}
		}
		b.report(b.err)
		return n, b.err
	}
	if n > 0 {
		b.started = true
		if b.max > 0 {
			if b.read += int64(n); b.read > b.max {
				b.err = &limitError{fmt.Sprintf("the upstream answer is larger than %d bytes", b.max)}
				b.report(b.err)
				return 0, b.err
			}
		} else if b.maxLine > 0 {
			if keep := b.lines(p[:n]); keep >= 0 {
				// Deliver the lines that ended before the long one, and
				// none of the long one's bytes: a reader must not get a
				// line longer than the cap, whole or cut.
				b.err = &limitError{fmt.Sprintf("a line of the upstream stream is longer than %d bytes", b.maxLine)}
				b.report(b.err)
				if keep > 0 {
					return keep, nil
				}
				return 0, b.err
			}
		}
	}
	if err != nil && err != io.EOF {
		if cerr := b.ctx.Err(); cerr != nil {
			return n, cerr
		}
		return n, &limitError{"the upstream connection failed: " + Describe(err)}
	}
	return n, err
}

// lines counts the bytes of the current line through chunk. When a line
// grows past MaxLine it returns how many bytes of chunk come before that
// line's start (0 when it started in an earlier read); else -1.
func (b *body) lines(chunk []byte) int {
	off := 0
	for {
		i := bytes.IndexAny(chunk[off:], "\r\n")
		if i < 0 {
			if b.line+len(chunk)-off > b.maxLine {
				return off
			}
			b.line += len(chunk) - off
			return -1
		}
		if b.line+i > b.maxLine {
			return off
		}
		b.line = 0
		off += i + 1
	}
}

// report logs a limit that cut an answer, for the operator: what the
// client sees may be a decoder's own error about the cut data.
func (b *body) report(err error) {
	if b.log != nil {
		b.log.Warn("upstream answer cut", "host", b.host, "err", err)
	}
}

func (b *body) expire() {
	b.expired.Store(true)
	_ = b.rc.Close()
}

func (b *body) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	return b.rc.Close()
}

// Describe says what kind of transport failure err is, without the
// addresses, URLs or host names its own text carries: an upstream's base
// URL is configuration a gateway client has no business learning.
func Describe(err error) string {
	var (
		dns     *net.DNSError
		netErr  net.Error
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		record  tls.RecordHeaderError
		alert   tls.AlertError
	)
	var parse *url.Error
	switch {
	case errors.As(err, &parse) && parse.Op == "parse":
		return "the provider's base URL is not valid"
	case errors.As(err, &dns):
		return "the upstream host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "the upstream host is unreachable"
	case errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid), errors.As(err, &verify):
		return "the upstream's TLS certificate was not accepted"
	case errors.As(err, &record), errors.As(err, &alert):
		return "the TLS handshake with the upstream failed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection closed before the answer was complete"
	}
	return "transport error"
}
