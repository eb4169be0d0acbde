package audio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// The response formats of a transcription.
var responseFormats = map[string]bool{"json": true, "text": true, "srt": true, "verbose_json": true, "vtt": true}

// field is one form field as the client sent it.
type field struct{ name, value string }

// Form is a transcription's form fields, in the client's order. Those
// after the file part are added while the file is read to its end, so
// every read goes through its lock.
type Form struct {
	mu     sync.Mutex
	fields []field
	atFile int // fields[:atFile] came before the file; -1: no file yet
	n      int // fields read, those ignored included
}

// Fields are the values of a transcription's known fields.
type Fields struct {
	Model          string
	Language       string
	Prompt         string
	ResponseFormat string // "" when the client gave none (json)
	Temperature    string
	Granularities  []string
}

func newForm() *Form { return &Form{atFile: -1} }

// add checks and adds one field.
func (f *Form) add(name, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n > MaxFields {
		return invalid("too_many_fields", "the form has more than %d fields besides the file", MaxFields)
	}
	switch name {
	case "model", "language", "prompt", "response_format", "temperature":
		for _, have := range f.fields {
			if have.name == name {
				return invalid("duplicate_field", "the form has the field %q twice", name)
			}
		}
	case "timestamp_granularities[]", "timestamp_granularities":
		name = "timestamp_granularities[]"
		if value != "word" && value != "segment" {
			return invalid("invalid_timestamp_granularities", `timestamp_granularities[] must be "word" or "segment"`)
		}
		k := 0
		for _, have := range f.fields {
			if have.name == name {
				k++
			}
		}
		if k >= MaxGranularities {
			return invalid("invalid_timestamp_granularities", "at most %d timestamp_granularities[]", MaxGranularities)
		}
	default:
		return nil // not a field of the API: ignored
	}
	switch name {
	case "response_format":
		if !responseFormats[value] {
			return invalid("invalid_response_format", `response_format must be one of json, text, srt, verbose_json, vtt`)
		}
	case "temperature":
		t, err := strconv.ParseFloat(value, 64)
		if err != nil || t < 0 || t > 1 {
			return invalid("invalid_temperature", "temperature must be a number from 0 to 1")
		}
	case "model":
		if value == "" {
			return invalid("missing_model", `"model" may not be empty`)
		}
	}
	f.fields = append(f.fields, field{name, value})
	return nil
}

// markFile records that the file part comes after the fields so far.
func (f *Form) markFile() {
	f.mu.Lock()
	f.atFile = len(f.fields)
	f.mu.Unlock()
}

// Values returns the known fields' values as read so far.
func (f *Form) Values() Fields {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v Fields
	for _, fd := range f.fields {
		switch fd.name {
		case "model":
			v.Model = fd.value
		case "language":
			v.Language = fd.value
		case "prompt":
			v.Prompt = fd.value
		case "response_format":
			v.ResponseFormat = fd.value
		case "temperature":
			v.Temperature = fd.value
		case "timestamp_granularities[]":
			v.Granularities = append(v.Granularities, fd.value)
		}
	}
	return v
}

// split returns the known fields but model before the file part and
// those after it (read so far), in order.
func (f *Form) split() (before, after []field) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := f.atFile
	if at < 0 {
		at = len(f.fields)
	}
	for i, fd := range f.fields {
		if fd.name == "model" {
			continue
		}
		if i < at {
			before = append(before, fd)
		} else {
			after = append(after, fd)
		}
	}
	return before, after
}

// readField reads one field's value, at most MaxFieldBytes.
func readField(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, MaxFieldBytes+1))
	if err != nil {
		return "", uploadError(err)
	}
	if len(b) > MaxFieldBytes {
		return "", invalid("field_too_long", "the form field %q is longer than %d bytes", p.FormName(), MaxFieldBytes)
	}
	return string(b), nil
}

// errTooLarge answers an upload past its cap.
func errTooLarge(max int64) *llm.Error {
	return &llm.Error{Status: http.StatusRequestEntityTooLarge, Type: llm.ErrInvalidRequest, Code: "file_too_large",
		Message: fmt.Sprintf("the audio file is larger than %d bytes", max)}
}

// uploadError is the client's error for a failed read of its upload.
func uploadError(err error) error {
	var le *llm.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &le):
		return le
	case errors.As(err, &mbe):
		return errTooLarge(mbe.Limit)
	}
	return invalid("invalid_upload", "the multipart upload could not be read: %s", describe(err))
}

// describe is a read error's text without addresses.
func describe(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "multipart") || errors.Is(err, io.ErrUnexpectedEOF) {
		return msg
	}
	return "the upload broke off"
}

// errAttemptOver fails the reads of an attempt that has ended.
var errAttemptOver = errors.New("audio: the attempt has ended")

// upload is the file part of a transcription, read once from the client
// and teed to a temporary file as it is read, so that every attempt
// reads the same bytes: the first one as they arrive, the next ones from
// the disk and then on from the client. One attempt reads at a time.
type upload struct {
	s  *Service
	mu sync.Mutex
	mr *multipart.Reader
	// part is the file part, nil once read to its end (and the fields
	// after it with rest).
	part     *multipart.Part
	form     *Form
	file     *os.File
	written  int64 // bytes of the file on disk
	reserved int64 // bytes counted in s.spool
	done     bool  // the whole upload was read
	err      error // sticky: the client's upload failed (*llm.Error)
	gen      int   // the attempt whose reader may read
	// deadline pushes the request's read deadline back (upload.alive).
	deadline func(time.Time) error
	started  time.Time
	extended time.Time // when the deadline was last pushed back
}

// alive pushes the request's read deadline back by UploadIdle, at most
// to MaxUploadTime after the request began, at most once a second (or a
// quarter of UploadIdle).
func (u *upload) alive() {
	now := time.Now()
	if u.deadline == nil || now.Sub(u.extended) < min(time.Second, u.s.opt.UploadIdle/4) {
		return
	}
	u.extended = now
	_ = u.deadline(earlier(now.Add(u.s.opt.UploadIdle), u.started.Add(u.s.opt.MaxUploadTime)))
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// newUpload spools p to a new temporary file.
func (s *Service) newUpload(mr *multipart.Reader, p *multipart.Part, form *Form) (*upload, error) {
	f, err := os.CreateTemp(s.opt.TempDir, "upload-*.part")
	if errors.Is(err, fs.ErrNotExist) {
		// Made at the first upload, not at start: a gateway that never
		// transcribes writes nothing.
		if err = os.MkdirAll(s.opt.TempDir, 0o700); err == nil {
			f, err = os.CreateTemp(s.opt.TempDir, "upload-*.part")
		}
	}
	if err != nil {
		return nil, &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded,
			Message: "the gateway cannot store the upload for now"}
	}
	return &upload{s: s, mr: mr, part: p, form: form, file: f}, nil
}

// close removes the temporary file and gives its space back.
func (u *upload) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	name := u.file.Name()
	u.file.Close()
	os.Remove(name)
	u.s.spool.Add(-u.reserved)
	u.reserved = 0
}

// reader returns the reader of a new attempt, from the first byte; the
// readers of earlier attempts fail from now on.
func (u *upload) reader() io.Reader {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.gen++
	return &attempt{u: u, gen: u.gen}
}

// end fails the reads of the current attempt.
func (u *upload) end() {
	u.mu.Lock()
	u.gen++
	u.mu.Unlock()
}

// clientErr is the error of the client's upload, if it failed.
func (u *upload) clientErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// size is the bytes read of the file so far.
func (u *upload) size() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written
}

// finish reads the rest of the upload (to disk), and the fields after it.
func (u *upload) finish() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	buf := make([]byte, 32<<10)
	for !u.done && u.err == nil {
		if _, err := u.fill(buf); err != nil && err != io.EOF {
			return err
		}
	}
	return u.err
}

// fill reads the next bytes of the file part into p and onto the disk;
// at the part's end it reads the fields after it. u.mu is held.
func (u *upload) fill(p []byte) (int, error) {
	if u.done {
		return 0, io.EOF
	}
	if u.err != nil {
		return 0, u.err
	}
	n, err := u.part.Read(p)
	if n > 0 {
		u.alive()
		max := u.s.opt.MaxUpload
		if u.written+int64(n) > max {
			u.err = errTooLarge(max)
			return 0, u.err
		}
		if u.s.spool.Add(int64(n)) > u.s.opt.MaxSpool {
			u.s.spool.Add(-int64(n))
			u.err = &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Code: "upload_space_full",
				Message: "the gateway's space for uploads in flight is full; retry later"}
			return 0, u.err
		}
		u.reserved += int64(n)
		if _, werr := u.file.WriteAt(p[:n], u.written); werr != nil {
			u.err = &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded,
				Message: "the gateway cannot store the upload for now"}
			return 0, u.err
		}
		u.written += int64(n)
	}
	switch {
	case err == io.EOF:
		u.part = nil
		if rerr := u.rest(); rerr != nil {
			u.err = rerr
			if n > 0 {
				return n, nil
			}
			return 0, rerr
		}
		u.done = true
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	case err != nil:
		u.err = uploadError(err)
		if n > 0 {
			return n, nil
		}
		return 0, u.err
	}
	return n, nil
}

// rest reads the fields after the file part.
func (u *upload) rest() error {
	for {
		p, err := u.mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return uploadError(err)
		}
		if p.FormName() == "file" {
			return invalid("too_many_files", "the form has more than one file part")
		}
		if len(p.FormName()) > MaxFieldName {
			return invalid("invalid_field", "a form field's name is longer than %d bytes", MaxFieldName)
		}
		v, err := readField(p)
		if err != nil {
			return err
		}
		if err := u.form.add(p.FormName(), v); err != nil {
			return err
		}
	}
}

// attempt is one attempt's reader of an upload.
type attempt struct {
	u   *upload
	gen int
	pos int64
}

func (a *attempt) Read(p []byte) (int, error) {
	u := a.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.gen != u.gen {
		return 0, errAttemptOver
	}
	if len(p) == 0 {
		return 0, nil
	}
	if a.pos < u.written {
		n := min(int64(len(p)), u.written-a.pos)
		k, err := u.file.ReadAt(p[:n], a.pos)
		a.pos += int64(k)
		if err != nil && !(err == io.EOF && int64(k) == n) {
			return k, err
		}
		return k, nil
	}
	n, err := u.fill(p)
	a.pos += int64(n)
	return n, err
}
