package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// Conversation is what a stored response continues from: the system
// prompt from system and developer input items (instructions are not
// carried over), every message including the response's own assistant
// turn, and the response object as the client received it.
type Conversation struct {
	System   []llm.Part      `json:"system,omitempty"`
	Messages []llm.Message   `json:"messages"`
	Response json.RawMessage `json:"response"`
}

func responsesErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, responses.EncodeError) }

// SetResponseStore replaces the store of Responses conversations (by
// default a MemoryResponseStore with the default limits).
func (s *Server) SetResponseStore(rs pipeline.ResponseStore) { s.responses = rs }

func (s *Server) registerResponses() {
	if s.responses == nil {
		s.responses = pipeline.NewMemoryResponseStore(pipeline.ResponseLimits{}, s.clock)
	}
	s.mux.Handle("POST /v1/responses", s.keyed(responsesErrors, s.createResponse))
	s.mux.Handle("GET /v1/responses/{id}", s.keyed(responsesErrors, s.getResponse))
	s.mux.Handle("DELETE /v1/responses/{id}", s.keyed(responsesErrors, s.deleteResponse))
}

func newResponseID() string {
	var b [responseIDBytes]byte
	_, _ = rand.Read(b[:])
	return responseIDPrefix + hex.EncodeToString(b[:])
}

const (
	responseIDPrefix = "resp_"
	responseIDBytes  = 24
)

// validResponseID reports whether id is of the form the gateway gives
// out; no other id can be stored, so the store is not asked.
func validResponseID(id string) bool {
	h, ok := strings.CutPrefix(id, responseIDPrefix)
	if !ok || len(h) != 2*responseIDBytes {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// responseOwner is the scope of the request's stored responses: the
// gateway key's id, "" without a key. A key of the configuration is
// named by a hash of the key rather than by its position, so that
// removing or reordering configured keys does not hand one key's
// conversations to another.
func (s *Server) responseOwner(r *http.Request) string {
	id := KeyIDFrom(r.Context())
	if n, ok := strings.CutPrefix(id, "config:"); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= len(s.keys) {
			sum := sha256.Sum256(append([]byte("omni route stored responses\x00"), s.keys[i-1][:]...))
			return "config:" + hex.EncodeToString(sum[:16])
		}
	}
	return id
}

// storedConversation returns owner's conversation id, if stored.
func (s *Server) storedConversation(ctx context.Context, owner, id string) (Conversation, bool, error) {
	if !validResponseID(id) {
		return Conversation{}, false, nil
	}
	raw, ok, err := s.responses.Get(ctx, owner, id)
	if err != nil || !ok {
		return Conversation{}, false, err
	}
	c, err := decodeConversation(raw)
	if err != nil {
		return Conversation{}, false, fmt.Errorf("stored response %s: %w", id, err)
	}
	return c, true, nil
}

// encodeConversation is a conversation's stored JSON. Tool-call
// arguments are kept as JSON strings, byte for byte: as a
// json.RawMessage they would be compacted (changing what the upstream
// sees next turn, and its prompt cache) or, not being JSON, refused.
func encodeConversation(c Conversation) ([]byte, error) {
	msgs := make([]llm.Message, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = m
		copied := false
		for j, p := range m.Parts {
			if p.ToolCall == nil {
				continue
			}
			if !copied {
				msgs[i].Parts, copied = append([]llm.Part(nil), m.Parts...), true
			}
			tc := *p.ToolCall
			q, err := json.Marshal(string(tc.Arguments))
			if err != nil {
				return nil, err
			}
			tc.Arguments = q
			msgs[i].Parts[j].ToolCall = &tc
		}
	}
	c.Messages = msgs
	return json.Marshal(c)
}

// decodeConversation reverses encodeConversation.
func decodeConversation(raw []byte) (Conversation, error) {
	var c Conversation
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, err
	}
	for _, m := range c.Messages {
		for _, p := range m.Parts {
			if p.ToolCall == nil {
				continue
			}
			var args string
			if err := json.Unmarshal(p.ToolCall.Arguments, &args); err != nil {
				return c, err
			}
			p.ToolCall.Arguments = nil
			if args != "" {
				p.ToolCall.Arguments = json.RawMessage(args)
			}
		}
	}
	return c, nil
}

func notFound(id string) *llm.Error {
	return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Message: fmt.Sprintf("No response found with id '%s'.", id)}
}

func (s *Server) createResponse(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	in, err := responses.DecodeRequest(body)
	if err != nil {
		return err
	}
	req := in.Request
	owner := s.responseOwner(r)
	if in.PreviousResponseID != "" {
		prev, ok, err := s.storedConversation(r.Context(), owner, in.PreviousResponseID)
		if err != nil {
			return err
		}
		if !ok {
			return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "previous_response_not_found",
				Message: fmt.Sprintf("Previous response with id '%s' not found.", in.PreviousResponseID)}
		}
		continueFrom(in, prev)
	}
	if err := s.checkBuiltinTools(req); err != nil {
		return err
	}
	meta := in.Echo
	meta.ID, meta.CreatedAt = newResponseID(), s.clock.Now().Unix()
	save := func(full *llm.Response) {
		if !in.Store {
			return
		}
		obj, err := json.Marshal(responses.Complete(meta, full))
		if err != nil {
			return
		}
		msgs := append([]llm.Message{}, req.Messages...)
		if len(full.Content) > 0 {
			msgs = append(msgs, llm.Message{Role: llm.RoleAssistant, Parts: full.Content})
		}
		conv, err := encodeConversation(Conversation{System: req.System[in.Instructions:], Messages: msgs, Response: obj})
		if err != nil {
			return
		}
		if err := s.responses.Put(context.WithoutCancel(r.Context()), owner, meta.ID, conv); errors.Is(err, pipeline.ErrResponseTooLarge) {
			if s.log != nil {
				s.log.Warn("response not stored: its conversation is above the stored-response size limit", "response_id", meta.ID, "bytes", len(conv))
			}
		} else if err != nil {
			httpx.LogError(s.log, r, "storing a response", err)
		}
	}
	resp, stream, err := s.execute(responses.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	if stream != nil {
		// Saved when the stop event passes, before the client sees
		// response.completed and can continue from it.
		stream = &savingStream{Stream: stream, acc: llm.NewAccumulator(), save: save}
	} else {
		save(resp)
	}
	return s.reply(w, resp, stream, func(resp *llm.Response) ([]byte, error) {
		return responses.EncodeResponse(meta, resp)
	}, func(w http.ResponseWriter) streamEncoder {
		return responses.NewStreamEncoder(w, meta)
	})
}

// continueFrom prepends a stored conversation to in's request: the new
// instructions first, then the stored system prompt and messages, then
// the new input.
func continueFrom(in *responses.Inbound, prev Conversation) {
	req := in.Request
	sys := make([]llm.Part, 0, len(req.System)+len(prev.System))
	sys = append(sys, req.System[:in.Instructions]...)
	sys = append(sys, prev.System...)
	req.System = append(sys, req.System[in.Instructions:]...)
	msgs := make([]llm.Message, 0, len(prev.Messages)+len(req.Messages))
	msgs = append(msgs, prev.Messages...)
	req.Messages = append(msgs, req.Messages...)
	// Results answering calls of the stored turns get the function name
	// formats that pair by name need.
	for i := len(prev.Messages); i < len(req.Messages); i++ {
		m := &req.Messages[i]
		if m.Role != llm.RoleTool || len(m.Parts) != 1 || m.Parts[0].ToolResult == nil || m.Parts[0].ToolResult.Name != "" {
			continue
		}
		tr := *m.Parts[0].ToolResult
		tr.Name = callName(req.Messages[:i], tr.CallID)
		m.Parts = []llm.Part{{Type: llm.PartToolResult, ToolResult: &tr}}
	}
}

func callName(msgs []llm.Message, id string) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		for _, p := range msgs[i].Parts {
			if p.ToolCall != nil && p.ToolCall.ID == id {
				return p.ToolCall.Name
			}
		}
	}
	return ""
}

// checkBuiltinTools rejects built-in tools (web_search, …) for a model
// that names a provider of another type: only a Responses upstream runs
// them. Aliases and combos are not resolved here; their other targets
// receive the function tools only.
func (s *Server) checkBuiltinTools(req *llm.Request) error {
	if !responses.BuiltinTools(req) {
		return nil
	}
	p, _, ok := router.SplitModel(req.Model)
	if !ok {
		return nil
	}
	conns := s.router.Connections(p)
	if len(conns) == 0 {
		return nil
	}
	if _, native := conns[0].Adapter.(*responses.Client); !native {
		return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest,
			Message: "tools: built-in tools (web_search, file_search, …) need an openai-responses provider; " + p + " is not one"}
	}
	return nil
}

// savingStream passes a stream through, folding it; when it completes,
// save receives the whole response before the stop event goes on.
type savingStream struct {
	llm.Stream
	acc    *llm.Accumulator
	save   func(*llm.Response)
	failed bool
}

func (t *savingStream) Next() (llm.Event, error) {
	ev, err := t.Stream.Next()
	if err != nil || t.failed {
		return ev, err
	}
	if t.acc.Add(ev) != nil {
		t.failed = true // an error event or a malformed stream: nothing to keep
		return ev, nil
	}
	if ev.Type == llm.EventStop {
		if full, err := t.acc.Response(); err == nil {
			t.save(full)
		}
	}
	return ev, nil
}

func (s *Server) getResponse(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c, ok, err := s.storedConversation(r.Context(), s.responseOwner(r), id)
	if err != nil {
		return err
	}
	if !ok {
		return notFound(id)
	}
	writeJSONBody(w, c.Response)
	return nil
}

func (s *Server) deleteResponse(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !validResponseID(id) {
		return notFound(id)
	}
	ok, err := s.responses.Delete(r.Context(), s.responseOwner(r), id)
	if err != nil {
		return err
	}
	if !ok {
		return notFound(id)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
	return nil
}
