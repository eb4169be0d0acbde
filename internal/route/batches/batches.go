// Package batches is the gateway's Batches API: POST /v1/batches,
// GET /v1/batches, GET/DELETE /v1/batches/{id} and
// POST /v1/batches/{id}/cancel in OpenAI's shape, scoped to the gateway
// key that made each batch, and the runner that executes them. The
// gateway runs a batch itself: every input line goes through the
// gateway's own endpoint for its url as the batch's key
// (feature.Dispatcher), so key policy, limits, budgets, usage records
// and fallback apply, with bounded concurrency that yields to
// interactive requests. Batches and their lines are durable in SQL (the
// module's own product, route_batches): a batch survives a restart and
// resumes where it stopped, and replicas sharing the database each take
// a line under a lease, so no line runs twice. The outputs are JSONL
// files in OpenAI's batch output format, stored through the files
// module.
package batches

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
)

// Files is where batches read their input and write their output: the
// files module's service, scoped to an owner (the gateway key id).
type Files interface {
	// Open returns the content of owner's file id; an error for a
	// missing, expired or another owner's file.
	Open(ctx context.Context, owner, id string) (io.ReadCloser, error)
	// Put stores r as a new file of owner and returns its id.
	Put(ctx context.Context, owner, purpose, filename string, r io.Reader) (string, error)
}

// Endpoints are the urls a batch may run, as OpenAI's Batches API names
// them.
var Endpoints = []string{"/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/moderations"}

// Limits are the caps of batches; zero fields take the defaults.
type Limits struct {
	// MaxLines is the most request lines one input file may hold
	// (OpenAI: 50,000).
	MaxLines int
	// MaxInputBytes bounds the input file (OpenAI: 200 MB).
	MaxInputBytes int64
	// MaxLineBytes bounds one input line.
	MaxLineBytes int
	// MaxAnswerBytes bounds one line's answer kept for the output file.
	MaxAnswerBytes int
	// MaxActivePerKey is how many unfinished batches a key may have.
	MaxActivePerKey int
	// MaxStoredPerKey is how many batches, finished ones included, a
	// key may keep (it deletes finished ones to make room).
	MaxStoredPerKey int
}

// The default caps.
const (
	DefaultMaxLines        = 50_000
	DefaultMaxInputBytes   = 200 << 20
	DefaultMaxLineBytes    = 1 << 20
	DefaultMaxAnswerBytes  = 8 << 20
	DefaultMaxActivePerKey = 8
	DefaultMaxStoredPerKey = 1000
	// MaxBody bounds POST /v1/batches's body.
	MaxBody = 64 << 10
	// Metadata caps (OpenAI's): pairs, key and value lengths.
	maxMetadataPairs = 16
	maxMetadataKey   = 64
	maxMetadataValue = 512
	// maxCustomID bounds a line's custom_id.
	maxCustomID = 512
	// maxListLimit is the largest page of GET /v1/batches.
	maxListLimit = 100
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxLines, DefaultMaxLines)
	def(&l.MaxLineBytes, DefaultMaxLineBytes)
	def(&l.MaxAnswerBytes, DefaultMaxAnswerBytes)
	def(&l.MaxActivePerKey, DefaultMaxActivePerKey)
	def(&l.MaxStoredPerKey, DefaultMaxStoredPerKey)
	if l.MaxInputBytes <= 0 {
		l.MaxInputBytes = DefaultMaxInputBytes
	}
	return l
}

// Config is the service's setup.
type Config struct {
	Limits Limits
	Runner RunnerConfig
	// Events hears batch.completed when a batch reaches a final status
	// (nil: none).
	Events events.Publisher
}

// Service serves the Batches API and runs batches.
type Service struct {
	ops    feature.Operations
	store  *Store
	files  Files
	clock  clock.Clock
	log    *slog.Logger
	limits Limits
	runner *Runner
	events events.Publisher
}

// New returns the Batches API over ops (the gateway transport), keeping
// batches in store, reading and writing files through files, running
// lines through d.
func New(ops feature.Operations, d feature.Dispatcher, store *Store, files Files, cfg Config, clk clock.Clock, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{ops: ops, store: store, files: files, clock: clk, log: log, limits: cfg.Limits.withDefaults(), events: events.Or(cfg.Events)}
	s.runner = newRunner(s, d, cfg.Runner)
	return s
}

// Module is the Batches API as a gateway feature: its routes, its
// tables and the runner.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "batches",
		Package:    "route/batches",
		Routes:     s.Register,
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Run:        s.runner.Run,
		Lifetime:   feature.Awaited,
	}
}

// Register adds the Batches API's routes to mux; they take a gateway key.
func (s *Service) Register(mux feature.Mux) {
	// They are cheap reads and writes of the batches' rows: a client
	// polling its batch is no interactive traffic to yield to.
	bg := s.runner.d.Background
	mux.Handle("POST /v1/batches", bg(s.ops.JSON(MaxBody, s.create)))
	mux.Handle("GET /v1/batches", bg(s.ops.Body(1, s.list)))
	mux.Handle("GET /v1/batches/{id}", bg(s.ops.Body(1, s.get)))
	mux.Handle("DELETE /v1/batches/{id}", bg(s.ops.Body(1, s.remove)))
	mux.Handle("POST /v1/batches/{id}/cancel", bg(s.ops.Body(1, s.cancel)))
}

// Runner returns the service's runner.
func (s *Service) Runner() *Runner { return s.runner }

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

func notFound(id string) *llm.Error {
	return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "not_found", Message: "no batch " + strconv.Quote(id)}
}

// createRequest is POST /v1/batches's body.
type createRequest struct {
	InputFileID      string          `json:"input_file_id"`
	Endpoint         string          `json:"endpoint"`
	CompletionWindow string          `json:"completion_window"`
	Metadata         json.RawMessage `json:"metadata"`
	// output_expires_after is accepted and not applied.
	OutputExpiresAfter json.RawMessage `json:"output_expires_after"`
}

func (s *Service) create(w http.ResponseWriter, r *http.Request, body []byte, _ feature.RunOp) error {
	var in createRequest
	if err := httpx.DecodeJSONBytes(body, &in, r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if in.InputFileID == "" || len(in.InputFileID) > 256 {
		return invalid("missing_input_file_id", `"input_file_id" is required (at most 256 bytes)`)
	}
	if !validEndpoint(in.Endpoint) {
		return invalid("invalid_endpoint", `"endpoint" must be one of %v`, Endpoints)
	}
	if in.CompletionWindow != "24h" {
		return invalid("invalid_completion_window", `"completion_window" must be "24h"`)
	}
	meta, err := checkMetadata(in.Metadata)
	if err != nil {
		return err
	}
	key := s.ops.KeyID(r.Context())
	// The input must be the key's own file; it is read by the runner.
	f, err := s.files.Open(r.Context(), key, in.InputFileID)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "file_not_found",
			Message: "no file " + strconv.Quote(in.InputFileID) + " for this key"}
	}
	_ = f.Close()
	now := s.clock.Now().UnixMilli()
	rec := record{ID: newID("batch_"), KeyID: key, Endpoint: in.Endpoint, InputFileID: in.InputFileID, Window: "24h",
		Status: "validating", Metadata: meta, CreatedAt: now, ExpiresAt: now + (24 * time.Hour).Milliseconds()}
	switch err := s.store.create(r.Context(), rec, s.limits.MaxActivePerKey, s.limits.MaxStoredPerKey); {
	case errors.Is(err, errActiveCap):
		return &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "too_many_batches",
			Message: fmt.Sprintf("this key has %d unfinished batches, the most it may have; wait for one to finish or cancel one", s.limits.MaxActivePerKey)}
	case errors.Is(err, errStoredCap):
		return &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "too_many_batches",
			Message: fmt.Sprintf("this key keeps %d batches, the most it may; delete finished ones", s.limits.MaxStoredPerKey)}
	case err != nil:
		return err
	}
	s.runner.wake()
	httpx.WriteJSON(w, http.StatusOK, render(rec))
	return nil
}

func validEndpoint(e string) bool {
	for _, v := range Endpoints {
		if e == v {
			return true
		}
	}
	return false
}

// checkMetadata validates metadata (OpenAI's caps: 16 string pairs, keys
// up to 64 and values up to 512 characters) and returns it compacted,
// "" for none.
func checkMetadata(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", invalid("invalid_metadata", `"metadata" must be an object of string values`)
	}
	if len(m) > maxMetadataPairs {
		return "", invalid("invalid_metadata", `"metadata" has %d pairs; at most %d`, len(m), maxMetadataPairs)
	}
	for k, v := range m {
		if utf8.RuneCountInString(k) > maxMetadataKey || utf8.RuneCountInString(v) > maxMetadataValue {
			return "", invalid("invalid_metadata", `"metadata" keys are at most %d and values at most %d characters`, maxMetadataKey, maxMetadataValue)
		}
	}
	if len(m) == 0 {
		return "", nil
	}
	b, _ := json.Marshal(m)
	return string(b), nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	id := r.PathValue("id")
	rec, err := s.store.get(r.Context(), s.ops.KeyID(r.Context()), id)
	if errors.Is(err, errNotFound) {
		return notFound(id)
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, render(rec))
	return nil
}

// listPage is GET /v1/batches's answer.
type listPage struct {
	Object  string   `json:"object"`
	Data    []*Batch `json:"data"`
	FirstID *string  `json:"first_id"`
	LastID  *string  `json:"last_id"`
	HasMore bool     `json:"has_more"`
}

func (s *Service) list(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return invalid("invalid_limit", `"limit" must be 1 to %d`, maxListLimit)
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > 256 {
		return invalid("invalid_after", `"after" is a batch id`)
	}
	recs, err := s.store.list(r.Context(), s.ops.KeyID(r.Context()), after, limit)
	if errors.Is(err, errNotFound) {
		return notFound(after)
	}
	if err != nil {
		return err
	}
	page := listPage{Object: "list", Data: []*Batch{}}
	if len(recs) > limit {
		page.HasMore, recs = true, recs[:limit]
	}
	for _, rec := range recs {
		page.Data = append(page.Data, render(rec))
	}
	if n := len(page.Data); n > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[n-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, page)
	return nil
}

func (s *Service) cancel(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	id := r.PathValue("id")
	rec, err := s.store.cancel(r.Context(), s.ops.KeyID(r.Context()), id, s.clock.Now().UnixMilli())
	switch {
	case errors.Is(err, errNotFound):
		return notFound(id)
	case errors.Is(err, errNotCancellable):
		return &llm.Error{Status: http.StatusConflict, Type: llm.ErrInvalidRequest, Code: "batch_not_cancellable",
			Message: "batch " + strconv.Quote(id) + " is " + rec.Status + " and cannot be cancelled"}
	case err != nil:
		return err
	}
	s.runner.drop(id)
	httpx.WriteJSON(w, http.StatusOK, render(rec))
	return nil
}

// deleted is DELETE /v1/batches/{id}'s answer.
type deleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	id := r.PathValue("id")
	switch err := s.store.remove(r.Context(), s.ops.KeyID(r.Context()), id); {
	case errors.Is(err, errNotFound):
		return notFound(id)
	case errors.Is(err, errNotFinished):
		return &llm.Error{Status: http.StatusConflict, Type: llm.ErrInvalidRequest, Code: "batch_not_finished",
			Message: "batch " + strconv.Quote(id) + " is not finished: cancel it first"}
	case err != nil:
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, deleted{ID: id, Object: "batch.deleted", Deleted: true})
	return nil
}

// Batch is OpenAI's batch object.
type Batch struct {
	ID               string          `json:"id"`
	Object           string          `json:"object"`
	Endpoint         string          `json:"endpoint"`
	Errors           *errorList      `json:"errors"`
	InputFileID      string          `json:"input_file_id"`
	CompletionWindow string          `json:"completion_window"`
	Status           string          `json:"status"`
	OutputFileID     *string         `json:"output_file_id"`
	ErrorFileID      *string         `json:"error_file_id"`
	CreatedAt        int64           `json:"created_at"`
	InProgressAt     *int64          `json:"in_progress_at"`
	ExpiresAt        *int64          `json:"expires_at"`
	FinalizingAt     *int64          `json:"finalizing_at"`
	CompletedAt      *int64          `json:"completed_at"`
	FailedAt         *int64          `json:"failed_at"`
	ExpiredAt        *int64          `json:"expired_at"`
	CancellingAt     *int64          `json:"cancelling_at"`
	CancelledAt      *int64          `json:"cancelled_at"`
	RequestCounts    RequestCounts   `json:"request_counts"`
	Metadata         json.RawMessage `json:"metadata"`
}

// RequestCounts are a batch's lines by outcome.
type RequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

type errorList struct {
	Object string       `json:"object"`
	Data   []batchError `json:"data"`
}

// batchError is one of a batch's errors (a failed validation).
type batchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

func render(r record) *Batch {
	sec := func(ms int64) *int64 {
		if ms == 0 {
			return nil
		}
		v := ms / 1000
		return &v
	}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	b := &Batch{ID: r.ID, Object: "batch", Endpoint: r.Endpoint, InputFileID: r.InputFileID, CompletionWindow: r.Window,
		Status: r.Status, OutputFileID: str(r.OutputFileID), ErrorFileID: str(r.ErrorFileID), CreatedAt: r.CreatedAt / 1000,
		InProgressAt: sec(r.InProgressAt), ExpiresAt: sec(r.ExpiresAt), FinalizingAt: sec(r.FinalizingAt),
		CompletedAt: sec(r.CompletedAt), FailedAt: sec(r.FailedAt), ExpiredAt: sec(r.ExpiredAt),
		CancellingAt: sec(r.CancellingAt), CancelledAt: sec(r.CancelledAt),
		RequestCounts: RequestCounts{Total: r.Total, Completed: r.Completed, Failed: r.Failed}, Metadata: json.RawMessage("null")}
	if r.Metadata != "" {
		b.Metadata = json.RawMessage(r.Metadata)
	}
	if r.Errors != "" {
		var e errorList
		if json.Unmarshal([]byte(r.Errors), &e) == nil {
			b.Errors = &e
		}
	}
	return b
}

func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
