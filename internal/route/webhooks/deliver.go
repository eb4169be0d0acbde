package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/route/events"
)

// secretPrefix begins every signing secret.
const secretPrefix = "whsec_"

// newSecret is a fresh signing secret: whsec_ and 32 random bytes in
// base64.
func newSecret() string {
	return secretPrefix + base64.StdEncoding.EncodeToString(auth.RandomBytes(32))
}

// secretKey is the HMAC key of secret: its base64 part after whsec_,
// decoded (24 to 64 bytes, as the specification asks).
func secretKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, errors.New(`a secret must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`a secret is "whsec_" followed by standard base64`)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, errors.New(`a secret's base64 part must decode to 24 to 64 bytes`)
	}
	return key, nil
}

// Sign is the webhook-signature header of a message: "v1," and the
// base64 HMAC-SHA256 under key of "id.timestamp.body".
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// payload is the JSON body of a delivery.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

func jitter() float64 { return 0.9 + 0.2*rand.Float64() }

// Run writes queued events to the database, delivers due deliveries
// with at most Workers at once, re-reads the webhooks and sweeps old
// deliveries, until ctx ends; the events still queued are written then.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.write(ctx) }()
	sem := make(chan struct{}, s.opt.Workers)
	poll := time.NewTicker(s.opt.Poll)
	defer poll.Stop()
	reload := time.NewTicker(s.opt.Reload)
	defer reload.Stop()
	sweep := time.NewTicker(10 * time.Minute)
	defer sweep.Stop()
	s.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			for range s.opt.Workers { // wait for the attempts in flight
				sem <- struct{}{}
			}
			return nil
		case <-reload.C:
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reading the webhooks failed", "err", err)
			}
			continue
		case <-sweep.C:
			s.sweep(ctx)
			continue
		case <-poll.C:
		case <-s.kick:
		}
		s.deliverDue(ctx, sem)
	}
}

// Kick makes the loop look for due deliveries now.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// deliverDue claims the due deliveries there are free workers for and
// starts them.
func (s *Service) deliverDue(ctx context.Context, sem chan struct{}) {
	for ctx.Err() == nil {
		free := s.opt.Workers - len(sem)
		if free <= 0 {
			return
		}
		now := s.clk.Now()
		ds, err := s.st.claim(ctx, s.owner, now.UnixMilli(), now.Add(s.opt.Lease).UnixMilli(), free)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("claiming webhook deliveries failed", "err", err)
			}
			return
		}
		for _, d := range ds {
			sem <- struct{}{}
			go func() {
				defer func() {
					<-sem
					// Half the workers free: look for more now, not at
					// the next poll (claims stay batched).
					if len(sem) <= s.opt.Workers/2 {
						s.Kick()
					}
				}()
				s.attempt(context.WithoutCancel(ctx), d)
			}()
		}
		if len(ds) < free {
			return
		}
	}
}

// attempt sends d once and records the outcome: delivered, retried
// later on the schedule, or failed after the last retry.
func (s *Service) attempt(ctx context.Context, d delivery) {
	h := s.hooks.Load().byID[d.WebhookID]
	if h == nil { // created on another replica since the last reload, or deleted
		if err := s.reload(ctx); err == nil {
			h = s.hooks.Load().byID[d.WebhookID]
		}
	}
	var status int
	var err error
	if h == nil {
		err = errors.New("the webhook no longer exists")
		d.Attempts = len(Schedule) // no retry
	} else {
		status, err = s.send(ctx, h, d.ID, []byte(d.Payload))
	}
	d.Attempts++
	d.LastStatus = status
	now := s.clk.Now()
	switch {
	case err == nil:
		d.Status, d.LastError = statusDelivered, ""
		s.sent.Inc()
	case d.Attempts > len(Schedule):
		d.Status, d.LastError = statusFailed, clip(err.Error())
	default:
		wait := time.Duration(float64(Schedule[d.Attempts-1]) * s.opt.Jitter())
		d.Status, d.LastError, d.NextAt = statusPending, clip(err.Error()), now.Add(wait).UnixMilli()
	}
	if err := s.st.finish(ctx, d, s.owner, now.UnixMilli()); err != nil {
		s.log.Warn("recording a webhook delivery failed", "delivery", d.ID, "err", err)
	}
}

func clip(s string) string {
	if len(s) > maxLastError {
		return s[:maxLastError] + "…"
	}
	return s
}

// send posts body to h signed as message id; a 2xx answer is delivered.
// At most maxResponseRead bytes of the answer are read.
func (s *Service) send(ctx context.Context, h *hook, id string, body []byte) (int, error) {
	ts := s.clk.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "omni-webhooks/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(h.Key, id, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // without the URL, which may carry credentials
		}
		return 0, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseRead))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, nil
	}
	msg := strings.TrimSpace(string(answer))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return resp.StatusCode, fmt.Errorf("status %d: redirects are not followed", resp.StatusCode)
	}
	return resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, msg)
}

// write takes queued events in batches (up to 256, or what arrived in
// 100 ms) and stores a delivery for each subscribed webhook, in one
// transaction per batch. Once ctx ends it writes what is queued and
// returns.
func (s *Service) write(ctx context.Context) {
	const batch = 256
	buf := make([]events.Event, 0, batch)
	flush := func(fctx context.Context) {
		if len(buf) > 0 {
			s.store(fctx, buf)
			buf = buf[:0]
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case e := <-s.queue:
					if buf = append(buf, e); len(buf) == batch {
						flush(fctx)
					}
				default:
					flush(fctx)
					return
				}
			}
		case e := <-s.queue:
			buf = append(buf, e)
			timer := time.NewTimer(100 * time.Millisecond)
		fill:
			for len(buf) < batch {
				select {
				case e := <-s.queue:
					buf = append(buf, e)
				case <-timer.C:
					break fill
				case <-ctx.Done():
					break fill
				}
			}
			timer.Stop()
			flush(ctx)
		}
	}
}

// store writes the deliveries of evs.
func (s *Service) store(ctx context.Context, evs []events.Event) {
	set := s.hooks.Load()
	now := s.clk.Now().UnixMilli()
	var ds []delivery
	for _, e := range evs {
		hs := set.types[e.Type]
		if len(hs) == 0 {
			continue
		}
		body, err := json.Marshal(payload{Type: e.Type, Timestamp: e.At.UTC(), Data: e.Data})
		if err != nil {
			s.log.Warn("a webhook event cannot be encoded", "type", e.Type, "err", err)
			continue
		}
		for _, h := range hs {
			ds = append(ds, delivery{ID: auth.RandomToken("msg_", 16), WebhookID: h.ID, Event: e.Type, Payload: string(body),
				NextAt: now, CreatedAt: now})
		}
	}
	if len(ds) == 0 {
		return
	}
	n, err := s.st.enqueue(ctx, ds, s.opt.MaxPending)
	if err != nil {
		s.log.Warn("storing webhook deliveries failed", "deliveries", len(ds), "err", err)
		s.drop(len(ds))
		return
	}
	if n < len(ds) {
		s.drop(len(ds) - n)
	}
	s.Kick()
}

// sweep deletes the delivered and failed deliveries older than the
// retention.
func (s *Service) sweep(ctx context.Context) {
	if _, err := s.st.sweep(ctx, s.clk.Now().Add(-s.opt.Retention).UnixMilli()); err != nil && ctx.Err() == nil {
		s.log.Warn("sweeping webhook deliveries failed", "err", err)
	}
}
