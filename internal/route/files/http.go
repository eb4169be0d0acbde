package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
)

// Caps of an upload's form.
const (
	// MaxFieldBytes bounds a form field's value (purpose, expiry).
	MaxFieldBytes = 1024
	// MaxParts bounds the parts of an upload's form.
	MaxParts = 16
	// UploadIdleTimeout is how long an upload may send nothing before
	// the connection is cut: the server's read timeout, which bounds a
	// whole request, would cut a large upload over a slow link, so an
	// upload's read deadline moves on as its bytes arrive, ...
	UploadIdleTimeout = 60 * time.Second
	// ... up to MaxUploadDuration after it started.
	MaxUploadDuration = time.Hour
)

// Register adds the Files API to mux; every route takes a gateway key.
func (s *Service) Register(mux feature.Mux) {
	ops := s.opt.Ops
	mux.Handle("POST /v1/files", ops.Body(s.opt.MaxFileBytes+multipartOverhead, s.needKey(s.upload)))
	mux.Handle("GET /v1/files", ops.Body(0, s.needKey(s.list)))
	mux.Handle("GET /v1/files/{id}", ops.Body(0, s.needKey(s.retrieve)))
	mux.Handle("DELETE /v1/files/{id}", ops.Body(0, s.needKey(s.delete)))
	mux.Handle("GET /v1/files/{id}/content", ops.Body(0, s.needKey(s.content)))
}

// needKey refuses a request without a gateway key (an anonymous or a
// keyless local client's, where the gateway serves those): files are
// scoped to a key, and all keyless callers would share one scope.
func (s *Service) needKey(h feature.BodyHandler) feature.BodyHandler {
	return func(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
		if s.opt.Ops.KeyID(r.Context()) == "" {
			return apiError(http.StatusUnauthorized, "missing_api_key",
				"the Files API needs a gateway key (Authorization: Bearer <key>): files belong to the key that uploaded them")
		}
		return h(w, r, run)
	}
}

// RegisterAdmin adds the management of the quota: GET and PUT
// /api/settings/files.
func (s *Service) RegisterAdmin(guarded feature.Registrar) {
	guarded("GET /api/settings/files", func(w http.ResponseWriter, r *http.Request) error {
		q, err := s.Quota(r.Context())
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, q)
		return nil
	})
	guarded("PUT /api/settings/files", func(w http.ResponseWriter, r *http.Request) error {
		var q Quota
		if err := httpx.DecodeJSON(w, r, &q, 4096); err != nil {
			return err
		}
		if q.MaxPerKey < 0 || q.MaxKeyBytes < 0 || q.MaxTotalBytes < 0 {
			return httpx.Errorf(http.StatusBadRequest, "invalid_quota", "quota values must not be negative")
		}
		if err := s.SetQuota(r.Context(), q); err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, q)
		return nil
	})
}

// object is a file in OpenAI's shape.
type object struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt *int64 `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
}

func toObject(f File) object {
	o := object{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.Created.Unix(), Filename: f.Filename,
		Purpose: f.Purpose, Status: "processed"}
	if !f.Expires.IsZero() {
		e := f.Expires.Unix()
		o.ExpiresAt = &e
	}
	return o
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// apiError is an error answered in OpenAI's shape.
func apiError(status int, code, msg string) *llm.Error {
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Code: code, Message: msg}
}

func invalid(param, msg string) *llm.Error {
	e := apiError(http.StatusBadRequest, "invalid_"+strings.NewReplacer("[", "_", "]", "").Replace(param), msg)
	e.Type = llm.ErrInvalidRequest
	return e
}

// quotaError is the answer to an upload past a quota: 403, which a
// client does not retry (a 429 would be, to no avail).
func quotaError(msg string) *llm.Error {
	return apiError(http.StatusForbidden, "file_quota_exceeded", msg)
}

// upload serves POST /v1/files: the form's file part is streamed to
// storage as it arrives; the other fields may come before or after it.
func (s *Service) upload(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return apiError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"the request body must be a multipart form (Content-Type: multipart/form-data)")
	}
	select {
	case s.uploads <- struct{}{}:
		defer func() { <-s.uploads }()
	default:
		e := apiError(http.StatusTooManyRequests, "too_many_uploads", "too many uploads in progress; retry shortly")
		e.RetryAfter = 5 * time.Second
		return e
	}
	ctx := r.Context()
	owner := s.opt.Ops.KeyID(ctx)
	now := s.opt.Clock.Now()
	limit, tooBig, err := s.limitFor(ctx, owner, now)
	if err != nil {
		return err
	}
	r.Body = newDeadlineBody(w, r.Body)
	mr, err := r.MultipartReader()
	if err != nil {
		return invalid("file", "the multipart form cannot be read: "+err.Error())
	}
	var (
		f        = File{ID: newID(), Owner: owner, Created: now}
		stored   bool
		fields   = map[string]string{}
		parts    int
		readErr  error
		filename string
	)
	// Whatever goes wrong after the file is stored removes it.
	defer func() {
		if stored && readErr != nil {
			_ = s.opt.Storage.Delete(context.WithoutCancel(ctx), f.ID)
		}
	}()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = multipartError(err)
			return readErr
		}
		if parts++; parts > MaxParts {
			readErr = invalid("file", fmt.Sprintf("the form has more than %d parts", MaxParts))
			return readErr
		}
		name := p.FormName()
		shown := name // the client's: shown at most 64 bytes of it
		if len(shown) > 64 {
			shown = shown[:64] + "…"
		}
		if name == "file" {
			if stored {
				readErr = invalid("file", "the form has more than one file part")
				return readErr
			}
			filename = p.FileName()
			if filename == "" {
				filename = "upload"
			}
			if readErr = checkFilename(filename); readErr != nil {
				return readErr
			}
			n, err := s.opt.Storage.Put(ctx, f.ID, &capped{r: p, n: limit, tooBig: tooBig})
			if err != nil {
				readErr = bodyError(err)
				return readErr
			}
			stored, f.Bytes = true, n
			continue
		}
		v, err := io.ReadAll(io.LimitReader(p, MaxFieldBytes+1))
		if err != nil {
			readErr = multipartError(err)
			return readErr
		}
		if len(v) > MaxFieldBytes {
			readErr = invalid("form", fmt.Sprintf("the form field %q exceeds %d bytes", shown, MaxFieldBytes))
			return readErr
		}
		if _, dup := fields[name]; dup {
			readErr = invalid("form", fmt.Sprintf("the form field %q is given twice", shown))
			return readErr
		}
		fields[name] = string(v)
	}
	if !stored {
		readErr = invalid("file", "the form has no file part (field \"file\")")
		return readErr
	}
	f.Filename = filename
	if readErr = s.applyFields(&f, fields, now); readErr != nil {
		return readErr
	}
	if readErr = s.record(ctx, f); readErr != nil {
		stored = false // record removed it
		return readErr
	}
	return writeJSON(w, toObject(f))
}

// applyFields sets f's purpose and expiry from the form's fields.
func (s *Service) applyFields(f *File, fields map[string]string, now time.Time) error {
	purpose, ok := fields["purpose"]
	switch {
	case !ok || purpose == "":
		return invalid("purpose", "purpose is required")
	case !uploadable[purpose]:
		return invalid("purpose", fmt.Sprintf("unknown purpose %q: one of assistants, batch, fine-tune, vision, user_data, evals", purpose))
	}
	f.Purpose = purpose
	f.Expires = expiry(purpose, now)
	anchor, hasAnchor := fields["expires_after[anchor]"]
	secs, hasSecs := fields["expires_after[seconds]"]
	if !hasAnchor && !hasSecs {
		return nil
	}
	if anchor != "created_at" {
		return invalid("expires_after[anchor]", `expires_after[anchor] must be "created_at"`)
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || time.Duration(n)*time.Second < MinExpiry || time.Duration(n)*time.Second > MaxExpiry {
		return invalid("expires_after[seconds]", fmt.Sprintf("expires_after[seconds] must be a number of seconds from %d to %d",
			int(MinExpiry.Seconds()), int(MaxExpiry.Seconds())))
	}
	f.Expires = now.Add(time.Duration(n) * time.Second)
	return nil
}

// multipartError is the answer to a form that cannot be read: the
// body's cap passed (413) as it is, any other a 400.
func multipartError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return invalid("file", "the multipart form cannot be read: "+err.Error())
}

// bodyError is the answer to an upload whose file part could not be
// stored: the caps' errors as they are, a body that stopped coming a
// 408, one cut short a 400; others (the disk's) are the gateway's.
func bodyError(err error) error {
	var (
		le  *llm.Error
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case errors.As(err, &le), errors.As(err, &mbe):
		return err
	case errors.As(err, &ne) && ne.Timeout():
		e := apiError(http.StatusRequestTimeout, "request_timeout", "the upload stopped sending")
		e.Type = llm.ErrInvalidRequest
		return e
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, multipart.ErrMessageTooLarge):
		return invalid("file", "the multipart form ends before its file part does")
	}
	return err
}

// list serves GET /v1/files.
func (s *Service) list(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	q := r.URL.Query()
	lq := ListQuery{Owner: s.opt.Ops.KeyID(r.Context()), Purpose: q.Get("purpose"), Limit: MaxListLimit, After: q.Get("after")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			return invalid("limit", fmt.Sprintf("limit must be from 1 to %d", MaxListLimit))
		}
		lq.Limit = n
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		lq.Asc = true
	default:
		return invalid("order", `order must be "asc" or "desc"`)
	}
	if lq.Purpose != "" && !uploadable[lq.Purpose] && lq.Purpose != PurposeBatchOutput {
		return invalid("purpose", fmt.Sprintf("unknown purpose %q", lq.Purpose))
	}
	if len(lq.After) > 100 {
		return invalid("after", "after is not a file id")
	}
	fs, more, err := s.List(r.Context(), lq)
	if err != nil {
		return err
	}
	out := struct {
		Object  string   `json:"object"`
		Data    []object `json:"data"`
		FirstID *string  `json:"first_id"`
		LastID  *string  `json:"last_id"`
		HasMore bool     `json:"has_more"`
	}{Object: "list", Data: make([]object, len(fs)), HasMore: more}
	for i, f := range fs {
		out.Data[i] = toObject(f)
	}
	if len(fs) > 0 {
		out.FirstID, out.LastID = &fs[0].ID, &fs[len(fs)-1].ID
	}
	return writeJSON(w, out)
}

// retrieve serves GET /v1/files/{id}.
func (s *Service) retrieve(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	f, err := s.Get(r.Context(), s.opt.Ops.KeyID(r.Context()), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, toObject(f))
}

// delete serves DELETE /v1/files/{id}.
func (s *Service) delete(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	id := r.PathValue("id")
	if err := s.Delete(r.Context(), s.opt.Ops.KeyID(r.Context()), id); err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"id": id, "object": "file", "deleted": true})
}

// content serves GET /v1/files/{id}/content: the bytes as stored, as an
// attachment never sniffed, with ranges and conditional requests.
func (s *Service) content(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	f, rc, err := s.open(r.Context(), s.opt.Ops.KeyID(r.Context()), r.PathValue("id"))
	if err != nil {
		return err
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "attachment")
	http.ServeContent(w, r, "", f.Created, rc)
	return nil
}

// deadlineBody moves the connection's read deadline to
// UploadIdleTimeout from now as the body is read (at most once a
// second), never past MaxUploadDuration from its start. Deadlines are
// the network's, in wall-clock time.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	end   time.Time // the latest deadline
	next  time.Time // when to move it again
	moves bool      // the connection takes deadlines
}

func newDeadlineBody(w http.ResponseWriter, body io.ReadCloser) *deadlineBody {
	now := time.Now()
	d := &deadlineBody{ReadCloser: body, rc: http.NewResponseController(w), end: now.Add(MaxUploadDuration), moves: true}
	d.move(now)
	return d
}

func (d *deadlineBody) move(now time.Time) {
	t := now.Add(UploadIdleTimeout)
	if t.After(d.end) {
		t = d.end
	}
	if d.rc.SetReadDeadline(t) != nil {
		d.moves = false // not a connection that takes deadlines (a test recorder)
	}
	d.next = now.Add(time.Second)
}

func (d *deadlineBody) Read(p []byte) (int, error) {
	if d.moves {
		if now := time.Now(); now.After(d.next) {
			d.move(now)
		}
	}
	return d.ReadCloser.Read(p)
}
