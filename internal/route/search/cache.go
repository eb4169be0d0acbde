package search

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// cacheMarker is the ID of a cached search answer: the gateway's response
// cache holds llm.Responses, and a search answer is kept as one whose
// only text part is the answer's JSON.
const cacheMarker = "omni-search"

// cacheKey hashes what determines a search answer: the gateway key, the
// target and the normalized request. Keys of chat answers hash other
// input, so the two never meet.
func cacheKey(keyID string, t router.Target, req *Request) string {
	b, err := json.Marshal(req)
	if err != nil {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(cacheMarker))
	h.Write([]byte{0})
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write([]byte(t.String()))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) cacheGet(ctx context.Context, key string) (*Result, bool) {
	if s.opt.Cache == nil || key == "" {
		return nil, false
	}
	resp, ok := s.opt.Cache.Get(ctx, key)
	if !ok || resp == nil || resp.ID != cacheMarker || len(resp.Content) != 1 || len(resp.Content[0].Text) > MaxCacheEntry {
		return nil, false
	}
	var r Result
	if err := json.Unmarshal([]byte(resp.Content[0].Text), &r); err != nil {
		return nil, false
	}
	if len(r.Results) > MaxResults {
		r.Results = r.Results[:MaxResults]
	}
	return &r, true
}

func (s *Service) cachePut(ctx context.Context, key string, t router.Target, r *Result) {
	if s.opt.Cache == nil || key == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil || len(b) > MaxCacheEntry {
		return
	}
	s.opt.Cache.Put(ctx, key, &llm.Response{ID: cacheMarker, Model: t.String(), StopReason: llm.StopEnd,
		Content: []llm.Part{{Type: llm.PartText, Text: string(b)}}})
}

// MaxFlights bounds the searches being coalesced at once; beyond it a
// search calls its upstream without waiting for an identical one.
const MaxFlights = 1024

// maxFollow bounds how often a search waits for another identical one
// whose client left (and then tries itself).
const maxFollow = 3

// flights coalesces identical searches running at the same time: the
// first calls the upstream, the others wait for its answer.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  *Result
	err  error
}

// do returns fn's answer, or that of a call of fn under key already
// running (shared). A leader whose client left does not fail its
// followers: one of them calls fn in its place.
func (f *flights) do(ctx context.Context, key string, fn func() (*Result, error)) (res *Result, shared bool, err error) {
	if key == "" {
		res, err = fn()
		return res, false, err
	}
	for range maxFollow {
		f.mu.Lock()
		if fl, ok := f.m[key]; ok {
			f.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			if errors.Is(fl.err, context.Canceled) || errors.Is(fl.err, context.DeadlineExceeded) {
				continue
			}
			return fl.res, true, fl.err
		}
		if len(f.m) >= MaxFlights {
			f.mu.Unlock()
			break
		}
		fl := &flight{done: make(chan struct{})}
		f.m[key] = fl
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			close(fl.done)
		}()
		fl.res, fl.err = fn()
		return fl.res, false, fl.err
	}
	res, err = fn()
	return res, false, err
}
