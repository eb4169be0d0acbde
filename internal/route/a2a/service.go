package a2a

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// SettingEnabled is the stored setting that turns the server on ("true").
const SettingEnabled = "a2a_enabled"

// MaxBody bounds a JSON-RPC request.
const MaxBody = 1 << 20

// Caps of what a message may carry and what a task keeps of it.
const (
	maxParts       = 64
	maxMessages    = 64
	maxKeptText    = 4 << 10 // of the message's text kept in the task's history
	maxContextID   = 128
	maxMetadataLen = 64 // pairs of data and metadata merged
)

// Settings reads the route store's settings.
type Settings interface {
	Setting(ctx context.Context, key string) (value string, ok bool, err error)
}

// Options are the server's dependencies.
type Options struct {
	// Ops is the gateway transport: the gateway key check of /v1 (a
	// keyless local client is served where /v1 serves one) and the key
	// of a request.
	Ops feature.Operations
	// Dispatcher runs smart-routing's chats through the gateway as the
	// calling key (nil: the skill only chooses).
	Dispatcher feature.Dispatcher
	Settings   Settings
	Sources    Sources
	Limits     Limits
	Clock      clock.Clock
	Log        *slog.Logger
}

// Service is the A2A server.
type Service struct {
	ops      feature.Operations
	disp     feature.Dispatcher
	settings Settings
	src      Sources
	clk      clock.Clock
	log      *slog.Logger
	tasks    *store
	version  string
}

// New returns the server.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return &Service{ops: o.Ops, disp: o.Dispatcher, settings: o.Settings, src: o.Sources, clk: o.Clock,
		log: o.Log, tasks: newStore(o.Clock, o.Limits), version: v}
}

// Module is the A2A server as a gateway feature.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:     "a2a",
		Package:  "route/a2a",
		Routes:   s.Register,
		Admin:    s.RegisterAdmin,
		Settings: feature.Settings{Stored: []string{SettingEnabled}},
	}
}

// Register adds the JSON-RPC endpoint (a gateway key, as /v1 takes one)
// and the public agent card to mux.
func (s *Service) Register(mux feature.Mux) {
	mux.Handle("POST /a2a", s.ops.JSON(MaxBody, s.serveRPC))
	mux.Handle("GET /.well-known/agent.json", httpx.WithAuth("public", http.HandlerFunc(s.serveCard)))
}

// enabled reads the setting at every request.
func (s *Service) enabled(ctx context.Context) (bool, error) {
	if s.settings == nil {
		return false, nil
	}
	v, ok, err := s.settings.Setting(ctx, SettingEnabled)
	return ok && v == "true", err
}

func writeRPC(w http.ResponseWriter, status int, id json.RawMessage, result any, e *rpcError) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	httpx.WriteJSON(w, status, response{JSONRPC: "2.0", ID: id, Result: result, Error: e})
}

// serveRPC answers POST /a2a. Every JSON-RPC outcome is HTTP 200 but
// the disabled server's, which is 503.
func (s *Service) serveRPC(w http.ResponseWriter, r *http.Request, body []byte, _ feature.RunOp) error {
	on, err := s.enabled(r.Context())
	if err != nil {
		return err
	}
	if !on {
		writeRPC(w, http.StatusServiceUnavailable, nil, nil, errorf(CodeDisabled,
			"the A2A server is disabled (setting a2aEnabled)"))
		return nil
	}
	req, rerr := parseRequest(body)
	if rerr != nil {
		writeRPC(w, http.StatusOK, req.ID, nil, rerr)
		return nil
	}
	keyID := s.ops.KeyID(r.Context())
	switch req.Method {
	case "message/send":
		p, in, skill, perr := parseSend(req.Params)
		if perr != nil {
			writeRPC(w, http.StatusOK, req.ID, nil, perr)
			return nil
		}
		t, rerr := s.execute(r.Context(), keyID, p, in, skill, nil)
		writeRPC(w, http.StatusOK, req.ID, orNil(t, rerr), rerr)
	case "message/stream":
		p, in, skill, perr := parseSend(req.Params)
		if perr != nil {
			writeRPC(w, http.StatusOK, req.ID, nil, perr)
			return nil
		}
		s.stream(w, r, req.ID, keyID, p, in, skill)
	case "tasks/get":
		id, perr := parseTaskID(req.Params)
		if perr != nil {
			writeRPC(w, http.StatusOK, req.ID, nil, perr)
			return nil
		}
		t, _, ok := s.tasks.get(keyID, id, false)
		if !ok {
			writeRPC(w, http.StatusOK, req.ID, nil, errorf(CodeTaskNotFound, "task not found"))
			return nil
		}
		writeRPC(w, http.StatusOK, req.ID, t, nil)
	case "tasks/cancel":
		id, perr := parseTaskID(req.Params)
		if perr != nil {
			writeRPC(w, http.StatusOK, req.ID, nil, perr)
			return nil
		}
		t, err := s.tasks.cancelTask(keyID, id, false)
		writeRPC(w, http.StatusOK, req.ID, orNil(t, cancelError(err)), cancelError(err))
	default:
		writeRPC(w, http.StatusOK, req.ID, nil, errorf(CodeMethodNotFound, "method not found: "+truncate(req.Method, 64)+
			" (supported: message/send, message/stream, tasks/get, tasks/cancel)"))
	}
	return nil
}

func orNil(t Task, e *rpcError) any {
	if e != nil {
		return nil
	}
	return t
}

func cancelError(err error) *rpcError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotCancelable):
		return errorf(CodeTaskNotCancelable, "the task has finished and cannot be canceled")
	}
	return errorf(CodeTaskNotFound, "task not found")
}

// parseRequest reads one JSON-RPC request. Its id is returned whenever
// it could be read, so that errors answer it.
func parseRequest(body []byte) (request, *rpcError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if !json.Valid(trimmed) {
		return request{}, errorf(CodeParseError, "parse error: the body is not JSON")
	}
	if trimmed[0] == '[' {
		return request{}, errorf(CodeInvalidRequest, "batch requests are not supported: send one request per POST")
	}
	if trimmed[0] != '{' {
		return request{}, errorf(CodeInvalidRequest, "the request must be a JSON-RPC 2.0 object")
	}
	var probe map[string]json.RawMessage
	_ = json.Unmarshal(trimmed, &probe)
	var req request
	if id, ok := probe["id"]; ok && validID(id) {
		req.ID = id
	}
	if err := json.Unmarshal(trimmed, &req); err != nil {
		return request{ID: req.ID}, errorf(CodeInvalidRequest, "invalid request: jsonrpc and method must be strings")
	}
	switch {
	case req.JSONRPC != "2.0":
		return req, errorf(CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	case len(req.ID) == 0 || !validID(req.ID) || string(req.ID) == "null":
		req.ID = nil
		return req, errorf(CodeInvalidRequest, `invalid request: "id" must be a string or a number (notifications are not served)`)
	case req.Method == "":
		return req, errorf(CodeInvalidRequest, `invalid request: "method" is required`)
	}
	if p := bytes.TrimSpace(req.Params); len(p) > 0 && p[0] != '{' {
		return req, errorf(CodeInvalidParams, `invalid params: "params" must be an object`)
	}
	return req, nil
}

func validID(id json.RawMessage) bool {
	id = bytes.TrimSpace(id)
	if len(id) == 0 || len(id) > 256 {
		return false
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return string(id) == "null"
}

func invalidParams(msg string) *rpcError { return errorf(CodeInvalidParams, "invalid params: "+msg) }

func parseTaskID(raw json.RawMessage) (string, *rpcError) {
	var p taskParams
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return "", invalidParams(`{"id": "<task id>"} is required`)
	}
	if p.ID == "" {
		p.ID = p.TaskID
	}
	if p.ID == "" || len(p.ID) > 128 {
		return "", invalidParams(`"id" (the task id) is required`)
	}
	return p.ID, nil
}

// parseSend reads message/send's params into the message kept in the
// task, the skill's input and the skill.
func parseSend(raw json.RawMessage) (sendParams, input, string, *rpcError) {
	var p sendParams
	if len(raw) == 0 {
		return p, input{}, "", invalidParams(`"message" is required`)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, input{}, "", invalidParams("the params do not have A2A's MessageSendParams shape: " + truncate(err.Error(), 200))
	}
	in := input{data: map[string]any{}}
	merge := func(m map[string]any) *rpcError {
		for k, v := range m {
			in.data[k] = v
		}
		if len(in.data) > maxMetadataLen {
			return invalidParams("too many data and metadata fields")
		}
		return nil
	}
	var texts []string
	switch {
	case p.Message != nil:
		m := p.Message
		if m.Role != "" && m.Role != "user" {
			return p, in, "", invalidParams(`the message's "role" must be "user"`)
		}
		if len(m.Parts) == 0 || len(m.Parts) > maxParts {
			return p, in, "", invalidParams("the message must have 1 to 64 parts")
		}
		if m.TaskID != "" {
			return p, in, "", errorf(CodeUnsupported, "tasks are not continued: send a new message without taskId")
		}
		if len(m.ContextID) > maxContextID {
			return p, in, "", invalidParams(`"contextId" is at most 128 characters`)
		}
		for _, part := range m.Parts {
			switch part.Kind {
			case "text":
				texts = append(texts, part.Text)
			case "data":
				d, ok := part.Data.(map[string]any)
				if !ok {
					return p, in, "", invalidParams("a data part's data must be an object")
				}
				if e := merge(d); e != nil {
					return p, in, "", e
				}
			default:
				return p, in, "", errorf(-32005, "unsupported part kind "+truncate(part.Kind, 32)+": send text or data parts")
			}
		}
		if e := merge(m.Metadata); e != nil {
			return p, in, "", e
		}
	case len(p.Messages) > 0:
		if len(p.Messages) > maxMessages {
			return p, in, "", invalidParams("at most 64 messages")
		}
		for _, m := range p.Messages {
			if m.Role == "" || m.Role == "user" {
				texts = append(texts, m.Content)
			}
		}
	default:
		return p, in, "", invalidParams(`"message" is required`)
	}
	if e := merge(p.Metadata); e != nil {
		return p, in, "", e
	}
	in.text = strings.Join(texts, "\n")
	skill := p.Skill
	if skill == "" {
		skill = in.str("skill")
	}
	if skill == "" {
		skill = guessSkill(in.text)
	}
	if !knownSkill(skill) {
		return p, in, "", invalidParams("unknown skill " + truncate(skill, 64) +
			": smart-routing, quota-management, provider-discovery, cost-analysis or health-report")
	}
	return p, in, skill, nil
}

// kept is the message a task keeps: its text cut to maxKeptText.
func kept(p sendParams, in input) Message {
	m := Message{Kind: "message", Role: "user", MessageID: newID("msg_")}
	if p.Message != nil && p.Message.MessageID != "" && len(p.Message.MessageID) <= 128 {
		m.MessageID = p.Message.MessageID
	}
	m.Parts = []Part{{Kind: "text", Text: truncate(in.text, maxKeptText)}}
	return m
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// execute runs skill for in as a new task of keyID, telling emit (if
// not nil) every change, and returns the task as it ended.
func (s *Service) execute(ctx context.Context, keyID string, p sendParams, in input, skill string, emit func(any)) (Task, *rpcError) {
	in.keyID = keyID
	run, cancel := context.WithCancel(ctx)
	defer cancel()
	contextID := ""
	if p.Message != nil {
		contextID = p.Message.ContextID
	}
	t, err := s.tasks.create(keyID, skill, contextID, kept(p, in), cancel)
	switch {
	case errors.Is(err, errTooManyRunning):
		return Task{}, errorf(CodeTooManyTasks, "this key has as many tasks running as it may; wait for one to finish")
	case err != nil:
		return Task{}, errorf(CodeTooManyTasks, "the server keeps as many tasks as it may; try again later")
	}
	if emit == nil {
		emit = func(any) {}
	}
	emit(t)
	if t, ok := s.tasks.setState(t.ID, StateWorking, nil); ok {
		emit(statusEvent(t))
	}
	arts, err := s.runSkill(run, skill, in)
	var f *failure
	switch {
	case run.Err() != nil && ctx.Err() != nil:
		t, _ = s.tasks.setState(t.ID, StateCanceled, agentText("the client went away"))
	case err == nil:
		if s.tasks.addArtifacts(t.ID, arts) {
			for _, a := range arts {
				emit(ArtifactUpdate{Kind: "artifact-update", TaskID: t.ID, ContextID: t.ContextID, Artifact: a, LastChunk: true})
			}
		}
		t, _ = s.tasks.setState(t.ID, StateCompleted, nil)
	case errors.As(err, &f):
		t, _ = s.tasks.setState(t.ID, StateFailed, agentText(f.msg))
	default:
		if run.Err() == nil {
			s.log.Error("a2a skill failed", "skill", skill, "task", t.ID, "err", err)
		}
		t, _ = s.tasks.setState(t.ID, StateFailed, agentText("the skill failed (internal error)"))
	}
	emit(statusEvent(t))
	return t, nil
}

func statusEvent(t Task) StatusUpdate {
	return StatusUpdate{Kind: "status-update", TaskID: t.ID, ContextID: t.ContextID, Status: t.Status, Final: terminal(t.Status.State)}
}

// stream answers message/stream: Server-Sent Events, each a JSON-RPC
// response whose result is the task, then its status and artifact
// updates, the last one final.
func (s *Service) stream(w http.ResponseWriter, r *http.Request, id json.RawMessage, keyID string, p sendParams, in input, skill string) {
	rc := http.NewResponseController(w)
	started := false
	emit := func(v any) {
		if !started {
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		b, _ := json.Marshal(response{JSONRPC: "2.0", ID: id, Result: v})
		_, _ = w.Write([]byte("data: "))
		_, _ = w.Write(b)
		_, _ = w.Write([]byte("\n\n"))
		_ = rc.Flush()
	}
	if _, rerr := s.execute(r.Context(), keyID, p, in, skill, emit); rerr != nil && !started {
		writeRPC(w, http.StatusOK, id, nil, rerr)
	}
}
