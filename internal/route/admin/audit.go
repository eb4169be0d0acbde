package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// AuditEntry is one successful management change, as the audit log keeps it.
// Request, Before and After are JSON documents with every secret-looking
// field masked (Mask), each at most MaxAuditDoc bytes (a larger one is
// replaced by a marker holding its start); nil when there is none.
type AuditEntry struct {
	At         time.Time
	Actor      Actor
	Method     string // POST, PUT, PATCH, DELETE
	Route      string // the route pattern ("DELETE /api/keys/{id}")
	Path       string // the request's path
	ResourceID string // the changed resource's id: the route's last path parameter, or a created one's "id"
	Status     int
	Request    json.RawMessage // the request body
	Before     json.RawMessage // GET of the resource before the change (when one answers 200)
	After      json.RawMessage // … and after it
}

// Recorder keeps the audit log (route/admin/audit).
type Recorder interface {
	Record(ctx context.Context, e AuditEntry) error
}

// MaxAuditDoc bounds each recorded document (bytes of JSON).
const MaxAuditDoc = 16 << 10

// maxHeld is how much of a change's answer is held back until the change
// is recorded: a client that reads the answer finds the record written.
// A longer answer is sent as it comes (and recorded after it).
const maxHeld = 256 << 10

// isChange reports a method that changes state.
func isChange(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// audited records the successful changes h makes (< 400) with the
// request's actor and the resource before and after. Failed and refused
// requests are not recorded: an anonymous caller could otherwise fill
// the log and push the real changes out under its row cap.
func (g *Guard) audited(h httpx.HandlerFunc) httpx.HandlerFunc {
	if g.opt.Audit == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if !isChange(r.Method) {
			return h(w, r)
		}
		c := AuditEntry{Method: r.Method, Route: r.Pattern, Path: r.URL.Path, ResourceID: lastPathValue(r)}
		c.Actor, _ = ActorFrom(r.Context())
		c.Request = g.requestBody(r)
		res := resourcePath(r.URL.Path, c.ResourceID)
		snapshot := func(path string) json.RawMessage { return g.snapshot(r, path) }
		c.Before = snapshot(res)
		cw := &holdWriter{w: w, status: http.StatusOK}
		err := h(cw, r)
		if err != nil || cw.status >= 400 {
			cw.release()
			return err
		}
		c.Status = cw.status
		c.At = g.clock.Now().UTC()
		id := ""
		if r.Method == http.MethodPost && c.ResourceID == "" {
			id = createdID(cw.held.Bytes())
		}
		switch {
		case id != "": // a creation: the new resource, not the collection
			c.ResourceID, c.Before = id, nil
			if c.After = snapshot(strings.TrimSuffix(res, "/") + "/" + id); c.After == nil {
				c.After = maskDoc(cw.held.Bytes())
			}
		case r.Method != http.MethodDelete || c.Before != nil:
			c.After = snapshot(res)
		}
		if rerr := g.opt.Audit.Record(context.WithoutCancel(r.Context()), c); rerr != nil {
			g.log.Error("audit log: a management change was made but could not be recorded",
				"err", rerr, "route", c.Route, "path", c.Path, "actor", c.Actor.Kind+":"+c.Actor.ID)
		}
		cw.release()
		return nil
	}
}

// Audited is h with its successful changes recorded in the audit log
// under the actor the request's context carries (WithActor), for a route
// that authenticates its callers itself.
func (g *Guard) Audited(h httpx.HandlerFunc) httpx.HandlerFunc { return g.audited(h) }

// lastPathValue is the value of the route pattern's last wildcard.
func lastPathValue(r *http.Request) string {
	p := r.Pattern
	i := strings.LastIndex(p, "{")
	if i < 0 {
		return ""
	}
	j := strings.Index(p[i:], "}")
	if j < 0 {
		return ""
	}
	name := strings.TrimSuffix(p[i+1:i+j], "...")
	return r.PathValue(name)
}

// createdID is the "id" of a JSON object answer.
func createdID(body []byte) string {
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	switch id := v.ID.(type) {
	case string:
		if id != "" && len(id) <= 200 && !strings.ContainsAny(id, "/?#") {
			return id
		}
	case float64:
		return strconv.FormatFloat(id, 'f', -1, 64)
	}
	return ""
}

// resourcePath is the path of the resource a change acts on: its path
// up to the segment naming the resource id (POST …/{id}/revoke acts on
// …/{id}), else the path itself.
func resourcePath(path, id string) string {
	if id == "" {
		return path
	}
	segs := strings.Split(path, "/")
	for i := len(segs) - 1; i > 0; i-- {
		if segs[i] == id {
			return strings.Join(segs[:i+1], "/")
		}
	}
	return path
}

// requestBody returns the masked JSON body of r and leaves r's body to
// be read again; nil for no body or one that is not JSON (an upload).
func (g *Guard) requestBody(r *http.Request) json.RawMessage {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if err != nil || len(buf) > MaxBody {
		return nil
	}
	return maskDoc(buf)
}

// snapshotTimeout bounds an in-process GET.
const snapshotTimeout = 5 * time.Second

// snapshot is the masked JSON answer of a GET of path served in-process
// with r's caller, when it answers 200 with JSON within snapshotTimeout.
func (g *Guard) snapshot(r *http.Request, path string) json.RawMessage {
	hp := g.snap.Load()
	if hp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(r.Context()), inprocKey{}, true), snapshotTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil
	}
	req.Host, req.RemoteAddr = r.Host, r.RemoteAddr
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	(*hp).ServeHTTP(rec, req)
	mt, _, _ := mime.ParseMediaType(rec.header.Get("Content-Type"))
	if rec.status != http.StatusOK || rec.over || ctx.Err() != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return nil
	}
	return maskDoc(rec.body.Bytes())
}

// maskDoc masks a JSON document (Mask) and bounds it to MaxAuditDoc:
// a longer one becomes {"truncated": true, "bytes": n, "head": "…"}.
// Not JSON: nil.
func maskDoc(b []byte) json.RawMessage {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil
	}
	out, err := json.Marshal(Mask(v))
	if err != nil {
		return nil
	}
	if len(out) <= MaxAuditDoc {
		return out
	}
	// the head is a string in the marker, escaped again: shorten it
	// until the marker fits
	for n := MaxAuditDoc / 2; ; n /= 2 {
		head := strings.ToValidUTF8(string(out[:n]), "")
		marker, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(out), "head": head})
		if len(marker) <= MaxAuditDoc {
			return marker
		}
	}
}

// Masked replaces the value of a secret-looking field.
const Masked = "***"

// Mask returns v (decoded JSON) with the value of every field whose name
// looks secret (SecretName) replaced by Masked (null and "" stay).
func Mask(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if SecretName(k) && x != nil && x != "" {
				out[k] = Masked
				continue
			}
			out[k] = Mask(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = Mask(x)
		}
		return out
	}
	return v
}

// secretWords are what a field name holding a secret contains.
var secretWords = []string{"password", "passwd", "secret", "token", "apikey", "credential", "authorization",
	"cookie", "privatekey", "accesskey", "signature", "bearer"}

// SecretName reports whether a field named name may hold a secret: its
// name (lower-cased, without "_", "-", ".") contains one of secretWords
// or is, or ends with, "key" ("api_key", "x-api-key", "key"). Token
// counts ("max_tokens") and key lists or references ("keys", "key_id",
// "keyPrefix") are not secrets.
func SecretName(name string) bool {
	n := strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(name))
	if strings.HasSuffix(n, "tokens") || strings.HasSuffix(n, "tokenlimit") {
		return false
	}
	if strings.HasSuffix(n, "key") {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// holdWriter holds a change's answer back (up to maxHeld bytes) until
// release, so that the change is recorded before the client sees the
// answer.
type holdWriter struct {
	w       http.ResponseWriter
	status  int
	wrote   bool // WriteHeader called
	passing bool // the answer goes straight through
	held    bytes.Buffer
}

func (h *holdWriter) Header() http.Header { return h.w.Header() }

func (h *holdWriter) WriteHeader(status int) {
	if h.wrote {
		return
	}
	h.wrote, h.status = true, status
	if h.passing {
		h.w.WriteHeader(status)
	}
}

func (h *holdWriter) Write(p []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	if !h.passing && h.held.Len()+len(p) > maxHeld {
		h.pass()
	}
	if h.passing {
		return h.w.Write(p)
	}
	return h.held.Write(p)
}

// pass sends what is held and lets the rest through.
func (h *holdWriter) pass() {
	if h.passing {
		return
	}
	h.passing = true
	if h.wrote {
		h.w.WriteHeader(h.status)
	}
	if h.held.Len() > 0 {
		_, _ = h.w.Write(h.held.Bytes())
	}
}

// Flush lets the answer through (a streamed answer).
func (h *holdWriter) Flush() {
	h.pass()
	if f, ok := h.w.(http.Flusher); ok {
		f.Flush()
	}
}

// release sends what is still held.
func (h *holdWriter) release() {
	if h.wrote || h.held.Len() > 0 {
		h.pass()
	}
}

func (h *holdWriter) Unwrap() http.ResponseWriter { return h.w }

// recorder is the answer of an in-process GET, kept up to MaxBody bytes.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	over   bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.wrote, r.status = true, status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(p) > MaxBody {
		r.over = true
		return len(p), nil
	}
	return r.body.Write(p)
}
