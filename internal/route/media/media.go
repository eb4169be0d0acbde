// Package media is the gateway's video and music generation: long-running
// jobs a client starts with POST /v1/videos/generations or POST
// /v1/music/generations, polls with GET …/generations/{id} and downloads
// with GET …/generations/{id}/content (the upstream's file streamed
// through, capped). A submit passes the pipeline's operation path
// (pipeline.Engine.Do: key policy, limits, budgets priced per second of
// output, usage records, fallback to the next target while no upstream
// accepted the job); the job is kept in the module's own table (product
// route_media), scoped to the gateway key that created it, polled
// upstream on reads and by the module's background loop, and deleted
// when its lifetime ends. Upstreams: OpenAI's Videos API (formats/openai's
// Videos, over an openai or openai-compatible connection), and this
// package's provider types runway (Runway's task API) and replicate
// (Replicate's predictions, video and music).
package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// The caps of a generation request, checked before it is routed.
const (
	// MaxBody bounds a submit's body.
	MaxBody = 64 << 10
	// MaxPromptChars bounds the prompt, in characters.
	MaxPromptChars = 4000
	// MaxVideoSeconds and MaxMusicSeconds bound the output's length.
	MaxVideoSeconds = 20
	MaxMusicSeconds = 300
	// DefaultVideoSeconds and DefaultMusicSeconds are the length of a
	// request that names none (Sora's default; a half-minute track).
	DefaultVideoSeconds = 4
	DefaultMusicSeconds = 30
	// MaxPollBatch is the most jobs one round of the background loop
	// polls.
	MaxPollBatch = 32
)

// Defaults of Config.
const (
	DefaultPollInterval    = 5 * time.Second
	DefaultPollTimeout     = 30 * time.Second
	DefaultLifetime        = 24 * time.Hour
	DefaultMaxRunTime      = 2 * time.Hour
	DefaultMaxActivePerKey = 8
	DefaultMaxContent      = 256 << 20
)

// Config bounds the jobs; zero fields take the defaults.
type Config struct {
	Clock clock.Clock
	Log   *slog.Logger
	// PollInterval is the most time between two polls of one job's
	// upstream (a young job is polled sooner: pollDelay; reads in between
	// answer what is stored), and the period of the background loop.
	PollInterval time.Duration
	// PollTimeout bounds one upstream poll.
	PollTimeout time.Duration
	// Lifetime is how long a job, finished or not, is kept after it was
	// created; then it is gone (404) and its row deleted.
	Lifetime time.Duration
	// MaxRunTime fails a job the upstream has not finished by then.
	MaxRunTime time.Duration
	// MaxActivePerKey is the most queued or in-progress jobs one gateway
	// key may have.
	MaxActivePerKey int
	// MaxContent bounds the output streamed through, in bytes.
	MaxContent int64
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.Lifetime <= 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.MaxRunTime <= 0 {
		c.MaxRunTime = DefaultMaxRunTime
	}
	if c.MaxActivePerKey <= 0 {
		c.MaxActivePerKey = DefaultMaxActivePerKey
	}
	if c.MaxContent <= 0 {
		c.MaxContent = DefaultMaxContent
	}
	return c
}

// Connections finds the connections of a provider (the router), to poll
// a job at the connection that accepted it.
type Connections interface {
	Connections(provider string) []router.Connection
}

// Service serves the generation endpoints over the gateway's operations.
type Service struct {
	ops   feature.Operations
	conns Connections
	store *Store
	cfg   Config
}

// New returns the generation endpoints over ops (the gateway transport),
// polling upstreams at conns, keeping jobs in db.
func New(ops feature.Operations, conns Connections, db *sqldb.DB, cfg Config) *Service {
	return &Service{ops: ops, conns: conns, store: NewStore(db), cfg: cfg.withDefaults()}
}

// Module is the generation endpoints as a gateway feature: its table, its
// routes and its background loop; the provider types come with
// Upstreams.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "media",
		Package:    "route/media",
		Routes:     s.Register,
		Migrations: feature.Migrations{Product: "route_media", FS: Migrations()},
		Run:        s.Run,
		Lifetime:   feature.Detached,
	}
}

// Register adds the six generation routes to mux; each takes a gateway
// key.
func (s *Service) Register(mux feature.Mux) {
	for _, k := range []struct {
		kind Kind
		path string
	}{{Video, "/v1/videos/generations"}, {Music, "/v1/music/generations"}} {
		mux.Handle("POST "+k.path, s.ops.JSON(MaxBody, s.submitter(k.kind)))
		mux.Handle("GET "+k.path+"/{id}", s.ops.Body(1<<10, s.getter(k.kind)))
		mux.Handle("GET "+k.path+"/{id}/content", s.ops.Body(1<<10, s.downloader(k.kind)))
	}
}

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

// request is a client's submit.
type request struct {
	Model  string  `json:"model"`
	Prompt *string `json:"prompt"`
	// Seconds is OpenAI's name (a string there; a number is taken too),
	// Duration the other APIs'.
	Seconds  json.RawMessage `json:"seconds"`
	Duration json.RawMessage `json:"duration"`
	Size     string          `json:"size"`
}

var sizePattern = regexp.MustCompile(`^([1-9][0-9]{1,3})x([1-9][0-9]{1,3})$`)

// seconds reads a length given as a number or a numeric string; ok is
// false when raw is absent or null.
func seconds(name string, raw json.RawMessage) (n int, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	f, perr := strconv.ParseFloat(string(raw), 64)
	if perr != nil || f < 0 || f > 1e6 || f != float64(int(f)) {
		return 0, false, invalid("invalid_duration", "%q must be a whole number of seconds", name)
	}
	return int(f), true, nil
}

// decode validates a client's submit of kind against the caps.
func decode(kind Kind, body []byte, contentType string) (*request, *Request, error) {
	var in request
	if err := httpx.DecodeJSONBytes(body, &in, contentType); err != nil {
		return nil, nil, err
	}
	if in.Model == "" {
		return nil, nil, invalid("missing_model", `"model" is required`)
	}
	if err := llm.CheckModel("model", in.Model); err != nil {
		return nil, nil, err
	}
	if in.Prompt == nil || strings.TrimSpace(*in.Prompt) == "" {
		return nil, nil, invalid("missing_prompt", `"prompt" is required and may not be empty`)
	}
	if !utf8.ValidString(*in.Prompt) || utf8.RuneCountInString(*in.Prompt) > MaxPromptChars {
		return nil, nil, invalid("prompt_too_long", `"prompt" must be UTF-8 text of at most %d characters`, MaxPromptChars)
	}
	sec, hasSec, err := seconds("seconds", in.Seconds)
	if err != nil {
		return nil, nil, err
	}
	dur, hasDur, err := seconds("duration", in.Duration)
	if err != nil {
		return nil, nil, err
	}
	if hasSec && hasDur && sec != dur {
		return nil, nil, invalid("invalid_duration", `"seconds" and "duration" differ; give one`)
	}
	n, max := DefaultVideoSeconds, MaxVideoSeconds
	if kind == Music {
		n, max = DefaultMusicSeconds, MaxMusicSeconds
	}
	switch {
	case hasSec:
		n = sec
	case hasDur:
		n = dur
	}
	if n < 1 || n > max {
		return nil, nil, invalid("invalid_duration", "the %s's length must be 1 to %d seconds", kind, max)
	}
	if in.Size != "" {
		if kind != Video {
			return nil, nil, invalid("invalid_size", `"size" is for video only`)
		}
		m := sizePattern.FindStringSubmatch(in.Size)
		w, _ := strconv.Atoi(safeIndex(m, 1))
		h, _ := strconv.Atoi(safeIndex(m, 2))
		if m == nil || w < 64 || h < 64 || w > 4096 || h > 4096 {
			return nil, nil, invalid("invalid_size", `"size" must be WIDTHxHEIGHT, each 64 to 4096 pixels (e.g. 1280x720)`)
		}
	}
	return &in, &Request{Kind: kind, Prompt: *in.Prompt, Seconds: n, Defaulted: !hasSec && !hasDur, Size: in.Size}, nil
}

func safeIndex(m []string, i int) string {
	if i < len(m) {
		return m[i]
	}
	return ""
}

func newID(kind Kind) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return string(kind) + "_gen_" + hex.EncodeToString(b)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Op describes the submit of req for model to the pipeline: priced per
// second of output; the target that accepted it, the length it makes and
// the upstream's task are stored in job and *task.
func Op(model string, req *Request, job *Job, task **Task) *pipeline.Op {
	modality := llm.ModalityVideo
	if req.Kind == Music {
		modality = llm.ModalityMusic
	}
	return &pipeline.Op{
		Modality: modality,
		Model:    model,
		Units:    []llm.Quantity{{Unit: llm.UnitSecond, N: int64(req.Seconds)}},
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			g, ok := generatorOf(c.Adapter)
			if !ok || !g.Serves(req.Kind) {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: string(req.Kind) + " generation"}
			}
			r := *req
			r.Model = t.Model
			tk, err := g.Submit(ctx, &r)
			if err != nil {
				return pipeline.OpUsage{}, err
			}
			if tk.ID == "" {
				return pipeline.OpUsage{}, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: t.Provider,
					Message: t.Provider + ": upstream answer unreadable: a job without an id"}
			}
			job.Provider, job.Connection, job.UpstreamModel = t.Provider, c.ID, t.Model
			*task = tk
			if tk.Seconds > 0 && tk.Seconds != req.Seconds {
				// The upstream makes (and bills) its own default length.
				job.Seconds = tk.Seconds
				return pipeline.OpUsage{Billed: []llm.Quantity{{Unit: llm.UnitSecond, N: int64(tk.Seconds)}}}, nil
			}
			job.Seconds = req.Seconds
			return pipeline.OpUsage{}, nil
		},
	}
}

func (s *Service) submitter(kind Kind) feature.OpHandler {
	return func(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
		in, req, err := decode(kind, body, r.Header.Get("Content-Type"))
		if err != nil {
			return err
		}
		ctx := r.Context()
		now := s.cfg.Clock.Now()
		job := &Job{ID: newID(kind), Kind: kind, KeyID: s.ops.KeyID(ctx), Model: in.Model, Prompt: req.Prompt,
			Seconds: req.Seconds, Size: req.Size, Status: Queued, CreatedAt: ms(now), ExpiresAt: ms(now.Add(s.cfg.Lifetime))}
		if err := s.store.Reserve(ctx, job, s.cfg.MaxActivePerKey, ms(now)); err != nil {
			if errors.Is(err, ErrTooMany) {
				return &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "too_many_jobs",
					Message: fmt.Sprintf("this key has %d generation jobs queued or in progress, the most it may have; wait for one to finish", s.cfg.MaxActivePerKey)}
			}
			return err
		}
		var task *Task
		if _, err := run(Op(in.Model, req, job, &task)); err != nil {
			if derr := s.store.Delete(context.WithoutCancel(ctx), job.ID); derr != nil {
				s.cfg.Log.Error("media: drop a job whose submit failed", "job", job.ID, "err", derr)
			}
			return err
		}
		s.apply(job, task, ms(s.cfg.Clock.Now()))
		if err := s.store.Save(context.WithoutCancel(ctx), job); err != nil {
			s.cfg.Log.Error("media: save a submitted job", "job", job.ID, "provider", job.Provider, "err", err)
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, render(job))
		return nil
	}
}

// apply takes what the upstream said of a job's task at now.
func (s *Service) apply(j *Job, t *Task, now int64) {
	if j.UpstreamID == "" {
		j.UpstreamID = t.ID
	}
	j.Status, j.Progress = t.Status, t.Progress
	j.NextPollAt = now + s.pollDelay(j, now)
	switch t.Status {
	case Completed:
		j.Progress, j.ContentURL, j.CompletedAt = 100, t.URL, now
	case Failed:
		j.ErrorCode, j.ErrorMessage, j.CompletedAt = clip(t.ErrorCode, 100), clip(t.ErrorMessage, 1000), now
	}
}

// MinPollDelay is the least time between two polls of a young job.
const MinPollDelay = 250 * time.Millisecond

// pollDelay is how long after now j's upstream may be asked again: a
// tenth of the job's age, at least MinPollDelay and at most the poll
// interval (a short generation is seen finished soon, a long one is not
// asked about more than once per interval).
func (s *Service) pollDelay(j *Job, now int64) int64 {
	d := (now - j.CreatedAt) / 10
	return max(min(d, s.cfg.PollInterval.Milliseconds()), min(MinPollDelay, s.cfg.PollInterval).Milliseconds())
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func notFound(kind Kind) error {
	return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "job_not_found",
		Message: "no " + string(kind) + " generation job with that id"}
}

// job reads the job named by r's path for the key of r, polled upstream
// when a poll is due.
func (s *Service) job(r *http.Request, kind Kind) (*Job, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	if len(id) > 100 {
		return nil, notFound(kind)
	}
	j, err := s.store.Get(ctx, kind, s.ops.KeyID(ctx), id, ms(s.cfg.Clock.Now()))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(kind)
	}
	if err != nil {
		return nil, err
	}
	s.refresh(ctx, j)
	return j, nil
}

func (s *Service) getter(kind Kind) feature.BodyHandler {
	return func(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
		j, err := s.job(r, kind)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, render(j))
		return nil
	}
}

// generator returns the generator of the connection that accepted j.
func (s *Service) generator(j *Job) (Generator, bool) {
	for _, c := range s.conns.Connections(j.Provider) {
		if c.ID == j.Connection {
			return generatorOf(c.Adapter)
		}
	}
	return nil, false
}

// refresh polls j's upstream when a poll is due and this caller claimed
// it, and stores what it said. A failed poll leaves the job as it was
// (the next one may succeed), unless the upstream no longer knows it.
func (s *Service) refresh(ctx context.Context, j *Job) {
	now := ms(s.cfg.Clock.Now())
	if !j.Active() || j.UpstreamID == "" || j.NextPollAt > now {
		return
	}
	next := now + s.pollDelay(j, now)
	won, err := s.store.Claim(ctx, j.ID, j.NextPollAt, next)
	if err != nil || !won {
		if err != nil {
			s.cfg.Log.Warn("media: claim a poll", "job", j.ID, "err", err)
		}
		return
	}
	j.NextPollAt = next
	fail := func(code, msg string) {
		s.apply(j, &Task{Status: Failed, ErrorCode: code, ErrorMessage: msg}, now)
		if err := s.store.Save(context.WithoutCancel(ctx), j); err != nil {
			s.cfg.Log.Error("media: save a job", "job", j.ID, "err", err)
		}
	}
	if now-j.CreatedAt > s.cfg.MaxRunTime.Milliseconds() {
		fail("generation_timeout", fmt.Sprintf("the upstream did not finish within %s", s.cfg.MaxRunTime))
		return
	}
	g, ok := s.generator(j)
	if !ok {
		fail("upstream_unavailable", "the connection that accepted the job is no longer configured")
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PollTimeout)
	defer cancel()
	t, err := g.Poll(pctx, j.Kind, j.UpstreamModel, j.UpstreamID)
	if err != nil {
		var le *llm.Error
		if errors.As(err, &le) && le.Status == http.StatusNotFound {
			fail("upstream_job_not_found", "the upstream no longer knows the job")
			return
		}
		s.cfg.Log.Warn("media: poll an upstream job", "job", j.ID, "provider", j.Provider, "err", err)
		return
	}
	s.apply(j, t, now)
	if err := s.store.Save(context.WithoutCancel(ctx), j); err != nil {
		s.cfg.Log.Error("media: save a job", "job", j.ID, "err", err)
	}
}

// contentType is the type a download is sent as: video/* and audio/* as
// the upstream names them, the kind's usual type when it names none, any
// other as application/octet-stream (never text/html).
func contentType(kind Kind, upstream string) string {
	mt, _, err := mime.ParseMediaType(upstream)
	switch {
	case err != nil || upstream == "":
		if kind == Video {
			return "video/mp4"
		}
		return "audio/mpeg"
	case strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "audio/"):
		return mt
	}
	return "application/octet-stream"
}

func (s *Service) downloader(kind Kind) feature.BodyHandler {
	return func(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
		j, err := s.job(r, kind)
		if err != nil {
			return err
		}
		if j.Status != Completed {
			return &llm.Error{Status: http.StatusConflict, Type: llm.ErrInvalidRequest, Code: "job_not_completed",
				Message: "the job is " + string(j.Status) + "; its content can be downloaded once it is completed"}
		}
		g, ok := s.generator(j)
		if !ok {
			return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Code: "upstream_unavailable",
				Message: "the connection that made the content is no longer configured"}
		}
		resp, err := g.Content(r.Context(), kind, &Task{ID: j.UpstreamID, URL: j.ContentURL})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.ContentLength > s.cfg.MaxContent {
			return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Code: "content_too_large",
				Message: fmt.Sprintf("the upstream's file is larger than %d bytes, the most the gateway passes on", s.cfg.MaxContent)}
		}
		h := w.Header()
		h.Set("Content-Type", contentType(kind, resp.Header.Get("Content-Type")))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Disposition", "attachment")
		h.Set("Cache-Control", "private, no-store")
		if resp.ContentLength >= 0 {
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		w.WriteHeader(http.StatusOK)
		n, err := io.Copy(w, io.LimitReader(resp.Body, s.cfg.MaxContent+1))
		if err != nil || n > s.cfg.MaxContent {
			// The answer has begun: cut the connection so that the client
			// cannot take a truncated file for a whole one.
			s.cfg.Log.Warn("media: content cut", "job", j.ID, "provider", j.Provider, "bytes", n, "err", err)
			panic(http.ErrAbortHandler)
		}
		return nil
	}
}

// Run is the background loop: every poll interval it deletes the jobs
// whose lifetime ended and polls the upstreams of at most MaxPollBatch
// jobs whose poll is due (jobs no client is reading still finish, fail
// or time out, and stop counting against their key).
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Tick(ctx)
		}
	}
}

// Tick is one round of the background loop.
func (s *Service) Tick(ctx context.Context) {
	now := ms(s.cfg.Clock.Now())
	if n, err := s.store.Sweep(ctx, now); err != nil {
		s.cfg.Log.Warn("media: sweep expired jobs", "err", err)
	} else if n > 0 {
		s.cfg.Log.Info("media: expired jobs deleted", "jobs", n)
	}
	jobs, err := s.store.Due(ctx, now, MaxPollBatch)
	if err != nil {
		s.cfg.Log.Warn("media: list jobs to poll", "err", err)
		return
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		s.refresh(ctx, j)
	}
}

// jobJSON is a job as clients see it: the Videos API's job object with
// the object named by kind.
type jobJSON struct {
	ID          string    `json:"id"`
	Object      string    `json:"object"`
	Status      Status    `json:"status"`
	Progress    int       `json:"progress"`
	Model       string    `json:"model"`
	Prompt      string    `json:"prompt"`
	Seconds     int       `json:"seconds"`
	Size        string    `json:"size,omitempty"`
	CreatedAt   int64     `json:"created_at"`
	CompletedAt *int64    `json:"completed_at"`
	ExpiresAt   int64     `json:"expires_at"`
	Error       *jobError `json:"error"`
}

type jobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func render(j *Job) jobJSON {
	out := jobJSON{ID: j.ID, Object: string(j.Kind) + ".generation", Status: j.Status, Progress: j.Progress, Model: j.Model,
		Prompt: j.Prompt, Seconds: j.Seconds, Size: j.Size, CreatedAt: j.CreatedAt / 1000, ExpiresAt: j.ExpiresAt / 1000}
	if j.CompletedAt > 0 {
		c := j.CompletedAt / 1000
		out.CompletedAt = &c
	}
	if j.Status == Failed {
		out.Error = &jobError{Code: j.ErrorCode, Message: j.ErrorMessage}
	}
	return out
}
