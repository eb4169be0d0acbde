package media

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// Request is a generation asked of an upstream.
type Request struct {
	Kind    Kind
	Model   string // the upstream's model name
	Prompt  string
	Seconds int
	// Defaulted reports that the client named no length: Seconds is the
	// gateway's default, which an upstream may replace with its own.
	Defaulted bool
	Size      string // WIDTHxHEIGHT, video only; "" for the upstream's default
}

// Task is an upstream's view of a job.
type Task struct {
	ID       string
	Status   Status
	Progress int // 0 to 100
	// ErrorCode and ErrorMessage say why a failed task failed.
	ErrorCode, ErrorMessage string
	// URL is where the output is, when the upstream hands out one.
	URL string
	// Seconds is the length the upstream was asked for when it differs
	// from the request's (its own default); 0: as asked.
	Seconds int
}

// Generator is the capability of a provider adapter that runs
// generation jobs: say which kinds it makes, start one, ask how it is
// going, open its output.
type Generator interface {
	Serves(kind Kind) bool
	Submit(ctx context.Context, req *Request) (*Task, error)
	Poll(ctx context.Context, kind Kind, model, id string) (*Task, error)
	// Content opens the output of a completed task (the caller closes
	// the body).
	Content(ctx context.Context, kind Kind, t *Task) (*http.Response, error)
}

// sora is what formats/openai offers of OpenAI's Videos API
// (openai.Videos).
type sora interface {
	Create(ctx context.Context, r openai.VideoRequest) (*openai.Video, error)
	Get(ctx context.Context, id string) (*openai.Video, error)
	Content(ctx context.Context, id string) (*http.Response, error)
}

// generatorOf returns the generator of an adapter: the provider types of
// this package, or the Videos API of an OpenAI-format connection.
func generatorOf(a router.Adapter) (Generator, bool) {
	switch g := a.(type) {
	case Generator:
		return g, true
	case *openai.Client:
		return soraGenerator{openai.VideosOf(g)}, true
	}
	return nil, false
}

type soraGenerator struct{ c sora }

func unsupported(kind Kind) error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "unsupported_kind",
		Message: "the model's provider does not generate " + string(kind)}
}

func (soraGenerator) Serves(kind Kind) bool { return kind == Video }

func (g soraGenerator) Submit(ctx context.Context, r *Request) (*Task, error) {
	if r.Kind != Video {
		return nil, unsupported(r.Kind)
	}
	v, err := g.c.Create(ctx, openai.VideoRequest{Model: r.Model, Prompt: r.Prompt, Seconds: r.Seconds, Size: r.Size})
	if err != nil {
		return nil, err
	}
	return soraTask(v), nil
}

func (g soraGenerator) Poll(ctx context.Context, kind Kind, _, id string) (*Task, error) {
	v, err := g.c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return soraTask(v), nil
}

func (g soraGenerator) Content(ctx context.Context, _ Kind, t *Task) (*http.Response, error) {
	return g.c.Content(ctx, t.ID)
}

func soraTask(v *openai.Video) *Task {
	t := &Task{ID: v.ID, Status: Queued}
	switch v.Status {
	case "in_progress":
		t.Status = InProgress
	case "completed":
		t.Status = Completed
	case "failed":
		t.Status = Failed
		t.ErrorCode, t.ErrorMessage = "generation_failed", "the upstream could not generate the video"
		if v.Error != nil {
			t.ErrorCode, t.ErrorMessage = nonEmpty(v.Error.Code, t.ErrorCode), nonEmpty(v.Error.Message, t.ErrorMessage)
		}
	}
	if v.Progress != nil {
		t.Progress = clampProgress(*v.Progress)
	}
	return t
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func clampProgress(p float64) int {
	return int(min(max(p, 0), 100))
}

// The provider types of this package and their default base URLs.
const (
	// TypeRunway is Runway's API: POST {base}/text_to_video, GET
	// {base}/tasks/{id}; base https://api.dev.runwayml.com/v1.
	TypeRunway = "runway"
	// TypeReplicate is Replicate's predictions API: POST
	// {base}/models/{owner}/{name}/predictions, GET
	// {base}/predictions/{id}; base https://api.replicate.com/v1.
	TypeReplicate = "replicate"
)

// RunwayVersion is the X-Runway-Version the Runway client speaks.
const RunwayVersion = "2024-11-06"

// RunwayDefaultSeconds is the length Runway is asked for when the client
// named none.
const RunwayDefaultSeconds = 5

var defaultBase = map[string]string{
	TypeRunway:    "https://api.dev.runwayml.com/v1",
	TypeReplicate: "https://api.replicate.com/v1",
}

// Upstreams is the generation provider types as a gateway module (it
// needs nothing built, so it comes with the formats at the top of the
// list).
func Upstreams() feature.Module {
	return feature.Module{Name: "media-upstreams", Package: "route/media", Providers: Register}
}

// Register adds the runway and replicate provider types.
func Register(reg *provider.Registry) {
	for _, typ := range []string{TypeRunway, TypeReplicate} {
		reg.Register(typ, func(cfg provider.Config) (router.Adapter, error) { return NewClient(typ, cfg), nil })
	}
}

// NewClient returns the client of one connection of a generation
// provider type.
func NewClient(typ string, cfg provider.Config) *Client {
	return &Client{adapter.NewSingle(typ, cfg, defaultBase[typ], "video and music generation only")}
}

// Client calls a generation upstream: Runway (video) or Replicate
// (video and music, by the model's inputs prompt and duration). It is a
// router.Adapter that serves generation only: chat routed to it is a
// 400.
type Client struct {
	adapter.Single
}

// ModelKind implements provider.Kinded: Runway's models make videos;
// Replicate's make anything, so their names say ("").
func (c *Client) ModelKind() string {
	if c.Type == TypeRunway {
		return provider.KindVideo
	}
	return ""
}

func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	req, err := adapter.NewRequest(ctx, c.Provider, method, c.BaseURL+path, b, "application/json")
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(req.Header, c.Headers)
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	if c.Type == TypeRunway {
		req.Header.Set("X-Runway-Version", RunwayVersion)
	}
	return req, nil
}

func (c *Client) do(req *http.Request, out any) error {
	raw, err := adapter.Do(adapter.Conn{HTTP: c.HTTP, Provider: c.Provider, DecodeError: decodeError}, req)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return c.unreadable("not a task")
	}
	return nil
}

func (c *Client) unreadable(what string) error {
	return upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: what})
}

// runwayTask is Runway's task object (GET /v1/tasks/{id}); the create
// endpoints answer only its id.
type runwayTask struct {
	ID          string   `json:"id"`
	Status      string   `json:"status"`
	Progress    *float64 `json:"progress"` // 0 to 1, while RUNNING
	Output      []string `json:"output"`
	Failure     string   `json:"failure"`
	FailureCode string   `json:"failureCode"`
}

// replicatePrediction is Replicate's prediction object.
type replicatePrediction struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  json.RawMessage `json:"error"`
}

// Serves implements Generator: Runway makes video, Replicate both.
func (c *Client) Serves(kind Kind) bool { return kind == Video || c.Type == TypeReplicate }

// Submit implements Generator.
func (c *Client) Submit(ctx context.Context, r *Request) (*Task, error) {
	switch c.Type {
	case TypeRunway:
		if r.Kind != Video {
			return nil, unsupported(r.Kind)
		}
		ratio := "1280:720"
		if r.Size != "" {
			ratio = strings.Replace(r.Size, "x", ":", 1)
		}
		// Runway's models take 5 or 10 seconds (some more): a request
		// that named no length gets 5, not the gateway's default.
		sec := r.Seconds
		if r.Defaulted {
			sec = RunwayDefaultSeconds
		}
		body := map[string]any{"model": r.Model, "promptText": r.Prompt, "ratio": ratio, "duration": sec}
		req, err := c.request(ctx, http.MethodPost, "/text_to_video", body)
		if err != nil {
			return nil, err
		}
		var t runwayTask
		if err := c.do(req, &t); err != nil {
			return nil, err
		}
		if t.ID == "" {
			return nil, c.unreadable("a task without an id")
		}
		out := &Task{ID: t.ID, Status: Queued}
		if sec != r.Seconds {
			out.Seconds = sec
		}
		return out, nil
	default:
		owner, name, ok := strings.Cut(r.Model, "/")
		if !ok || owner == "" || name == "" {
			return nil, &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "invalid_model",
				Message: "a Replicate model is named owner/name (e.g. meta/musicgen)"}
		}
		input := map[string]any{"prompt": r.Prompt, "duration": r.Seconds}
		if r.Size != "" {
			input["resolution"] = r.Size
		}
		req, err := c.request(ctx, http.MethodPost, "/models/"+url.PathEscape(owner)+"/"+url.PathEscape(name)+"/predictions",
			map[string]any{"input": input})
		if err != nil {
			return nil, err
		}
		return c.prediction(req)
	}
}

// Poll implements Generator.
func (c *Client) Poll(ctx context.Context, _ Kind, _, id string) (*Task, error) {
	if c.Type == TypeRunway {
		req, err := c.request(ctx, http.MethodGet, "/tasks/"+url.PathEscape(id), nil)
		if err != nil {
			return nil, err
		}
		var t runwayTask
		if err := c.do(req, &t); err != nil {
			return nil, err
		}
		out := &Task{ID: id}
		switch t.Status {
		case "PENDING", "THROTTLED":
			out.Status = Queued
		case "RUNNING":
			out.Status = InProgress
			if t.Progress != nil {
				out.Progress = clampProgress(*t.Progress * 100)
			}
		case "SUCCEEDED":
			if len(t.Output) == 0 {
				return nil, c.unreadable("a finished task without output")
			}
			out.Status, out.Progress, out.URL = Completed, 100, t.Output[0]
		case "FAILED", "CANCELLED":
			out.Status = Failed
			out.ErrorCode = nonEmpty(t.FailureCode, "generation_failed")
			out.ErrorMessage = nonEmpty(t.Failure, "the task "+strings.ToLower(t.Status))
		default:
			return nil, c.unreadable("a task of unknown status")
		}
		return out, nil
	}
	req, err := c.request(ctx, http.MethodGet, "/predictions/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	return c.prediction(req)
}

func (c *Client) prediction(req *http.Request) (*Task, error) {
	var p replicatePrediction
	if err := c.do(req, &p); err != nil {
		return nil, err
	}
	if p.ID == "" {
		return nil, c.unreadable("a prediction without an id")
	}
	out := &Task{ID: p.ID}
	switch p.Status {
	case "starting":
		out.Status = Queued
	case "processing":
		out.Status = InProgress
	case "succeeded":
		// The output is a file URL, or a list of them.
		var one string
		var many []string
		switch {
		case json.Unmarshal(p.Output, &one) == nil && one != "":
			out.URL = one
		case json.Unmarshal(p.Output, &many) == nil && len(many) > 0:
			out.URL = many[0]
		default:
			return nil, c.unreadable("a finished prediction without a file")
		}
		out.Status, out.Progress = Completed, 100
	case "failed", "canceled":
		var msg string
		_ = json.Unmarshal(p.Error, &msg)
		out.Status, out.ErrorCode, out.ErrorMessage = Failed, "generation_failed", nonEmpty(msg, "the prediction "+p.Status)
	default:
		return nil, c.unreadable("a prediction of unknown status")
	}
	return out, nil
}

// Content implements Generator: the output's URL, fetched without the
// connection's key (it is the upstream's file host, with signed URLs).
func (c *Client) Content(ctx context.Context, _ Kind, t *Task) (*http.Response, error) {
	return fetch(ctx, c.HTTP, c.Provider, t.URL)
}

// fetch GETs an output file over http or https, sending no credentials.
func fetch(ctx context.Context, hc *http.Client, provider, raw string) (*http.Response, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: provider,
			Message: provider + ": the upstream's output is not at an http(s) URL"}
	}
	req, err := upstreamhttp.NewRequest(upstreamhttp.LargeAnswer(ctx), http.MethodGet, u.String(), nil, provider)
	if err != nil {
		return nil, err
	}
	return upstreamhttp.Send(hc, req, provider, decodeError)
}

// decodeError reads the error bodies of the generation upstreams:
// Runway's {"error"}, Replicate's {"detail"} and OpenAI-style
// {"error":{"message"}}.
func decodeError(status int, h http.Header, body []byte) *llm.Error {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Detail  string          `json:"detail"`
		Message string          `json:"message"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		var s string
		var o struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(e.Error, &s) == nil && s != "":
			msg = s
		case json.Unmarshal(e.Error, &o) == nil && o.Message != "":
			msg = o.Message
		case e.Detail != "":
			msg = e.Detail
		case e.Message != "":
			msg = e.Message
		}
	}
	if msg == "" {
		msg = upstreamhttp.StatusText(status)
	}
	le := &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: clip(msg, 1000)}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
		le.RetryAfter = time.Duration(s) * time.Second
	}
	return le
}
