package files_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/files"
)

// part is one part of a multipart form: a file when filename is set.
type part struct{ name, filename, value string }

// form encodes parts as a multipart form.
func form(t *testing.T, parts ...part) (body []byte, contentType string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.name, p.filename))
			h.Set("Content-Type", "application/octet-stream")
			w, err = mw.CreatePart(h)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, p.value)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// send sends a request with key (none when "") and returns the status
// and body.
func send(t *testing.T, method, url, key string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// wantOpenAIError asserts an error body in OpenAI's shape.
func wantOpenAIError(t *testing.T, what string, status, want int, body []byte) {
	t.Helper()
	var eb struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if status != want || json.Unmarshal(body, &eb) != nil || eb.Error.Message == "" || eb.Error.Type == "" {
		t.Fatalf("%s: status %d body %s; want %d with an OpenAI error", what, status, body, want)
	}
}

func upload(t *testing.T, c openai.Client, content, purpose string) *openai.FileObject {
	t.Helper()
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(strings.NewReader(content), "a.jsonl", "application/jsonl"),
		Purpose: openai.FilePurpose(purpose)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Another key's file is a 404 everywhere, exactly as a missing one; the
// owner's file is untouched by the attempts.
func TestAnotherKeysFileIsNotFound(t *testing.T) {
	e := newEnv(t)
	a, b := e.client(e.key()), e.client(e.key())
	f := upload(t, a, "secret", "user_data")
	missing, other := map[string]string{}, map[string]string{}
	for _, tc := range []struct {
		id  string
		out map[string]string
	}{{"file-doesnotexist", missing}, {f.ID, other}} {
		_, err := b.Files.Get(ctx, tc.id)
		tc.out["get"] = fmt.Sprint(apiStatus(t, err), err.(*openai.Error).Message)
		_, err = b.Files.Content(ctx, tc.id)
		tc.out["content"] = fmt.Sprint(apiStatus(t, err), err.(*openai.Error).Message)
		_, err = b.Files.Delete(ctx, tc.id)
		tc.out["delete"] = fmt.Sprint(apiStatus(t, err), err.(*openai.Error).Message)
	}
	for op, got := range other {
		if !strings.HasPrefix(got, "404") || got != missing[op] {
			t.Errorf("%s of another key's file: %q; a missing one: %q", op, got, missing[op])
		}
	}
	page, err := b.Files.List(ctx, openai.FileListParams{})
	if err != nil || len(page.Data) != 0 {
		t.Fatalf("the other key lists %+v, %v", page, err)
	}
	res, err := a.Files.Content(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "secret" {
		t.Fatalf("owner reads %q", body)
	}
	// A key's cursor names none of another's files.
	code, body := send(t, "GET", e.Srv.URL+"/v1/files?after="+f.ID, e.key(), nil)
	wantOpenAIError(t, "after naming another key's file", code, http.StatusBadRequest, body)
}

// A Range request is answered 206 with exactly the bytes asked for.
func TestContentRange(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.key())
	var content strings.Builder
	for i := range 300 {
		fmt.Fprintf(&content, "%03d", i)
	}
	f := upload(t, c, content.String(), "user_data")
	res, err := c.Files.Content(ctx, f.ID, option.WithHeader("Range", "bytes=300-329"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent || string(body) != content.String()[300:330] ||
		res.Header.Get("Content-Range") != "bytes 300-329/900" {
		t.Fatalf("range: %d %q %q", res.StatusCode, res.Header.Get("Content-Range"), body)
	}
	if res.Header.Get("Content-Type") != "application/octet-stream" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("content headers %v", res.Header)
	}
	code, _ := send(t, "GET", e.Srv.URL+"/v1/files/"+f.ID+"/content", e.key(), nil, "Range", "bytes=2000-")
	if code != http.StatusNotFound { // another key: the file does not exist for it
		t.Fatalf("another key's range: %d", code)
	}
}

// expires_after sets expires_at; the list filters by purpose.
func TestExpiresAfterAndListFilter(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.key())
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(strings.NewReader("x"), "x.txt", "text/plain"),
		Purpose: openai.FilePurposeUserData, ExpiresAfter: openai.FileNewParamsExpiresAfter{Seconds: 3600}})
	if err != nil {
		t.Fatal(err)
	}
	if f.ExpiresAt != f.CreatedAt+3600 {
		t.Fatalf("expires_at %d, created_at %d", f.ExpiresAt, f.CreatedAt)
	}
	upload(t, c, "y", "batch")
	page, err := c.Files.List(ctx, openai.FileListParams{Purpose: openai.String("user_data")})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != f.ID {
		t.Fatalf("list of user_data: %+v, %v", page, err)
	}
	code, body := send(t, "GET", e.Srv.URL+"/v1/files?limit=10001", e.key(), nil)
	wantOpenAIError(t, "limit past the cap", code, http.StatusBadRequest, body)
}

// Bad uploads are 4xx in OpenAI's shape and leave nothing on disk.
func TestBadUploads(t *testing.T) {
	e := newEnv(t)
	key := e.key()
	file := part{"file", "a.jsonl", "{}\n"}
	purpose := part{"purpose", "", "batch"}
	cases := []struct {
		name   string
		parts  []part
		status int
	}{
		{"no file part", []part{purpose}, 400},
		{"file as a plain field", []part{{"filex", "", "x"}, purpose}, 400},
		{"no purpose", []part{file}, 400},
		{"unknown purpose", []part{file, {"purpose", "", "nonsense"}}, 400},
		{"purpose only the gateway writes", []part{file, {"purpose", "", "batch_output"}}, 400},
		{"purpose after the file, expiry too short", []part{file, purpose, {"expires_after[anchor]", "", "created_at"}, {"expires_after[seconds]", "", "60"}}, 400},
		{"unknown anchor", []part{purpose, file, {"expires_after[anchor]", "", "now"}, {"expires_after[seconds]", "", "3600"}}, 400},
		{"two files", []part{purpose, file, file}, 400},
		{"field too long", []part{{"purpose", "", strings.Repeat("b", files.MaxFieldBytes+1)}, file}, 400},
		{"purpose twice", []part{purpose, purpose, file}, 400},
		{"file name too long", []part{purpose, {"file", strings.Repeat("n", files.MaxFilename+1), "x"}}, 400},
	}
	var many []part
	for i := range files.MaxParts {
		many = append(many, part{fmt.Sprint("f", i), "", "x"})
	}
	cases = append(cases, struct {
		name   string
		parts  []part
		status int
	}{"too many parts", append(many, purpose, file), 400})
	for _, tc := range cases {
		body, ct := form(t, tc.parts...)
		code, out := send(t, "POST", e.Srv.URL+"/v1/files", key, body, "Content-Type", ct)
		wantOpenAIError(t, tc.name, code, tc.status, out)
	}
	code, out := send(t, "POST", e.Srv.URL+"/v1/files", key, []byte(`{"purpose":"batch"}`), "Content-Type", "application/json")
	wantOpenAIError(t, "a JSON body", code, http.StatusUnsupportedMediaType, out)
	code, out = send(t, "POST", e.Srv.URL+"/v1/files", key, []byte("garbage"), "Content-Type", "multipart/form-data; boundary=zzz")
	wantOpenAIError(t, "a broken form", code, http.StatusBadRequest, out)
	for _, path := range []string{"/v1/files/file-nope", "/v1/files/file-nope/content"} {
		code, out = send(t, "GET", e.Srv.URL+path, key, nil)
		wantOpenAIError(t, "GET "+path, code, http.StatusNotFound, out)
	}
	code, out = send(t, "DELETE", e.Srv.URL+"/v1/files/file-nope", key, nil)
	wantOpenAIError(t, "DELETE of an unknown id", code, http.StatusNotFound, out)
	if names := e.stored(); len(names) != 0 {
		t.Fatalf("bad uploads left %v on disk", names)
	}
}

// Who has no key gets nothing: a wrong key anywhere, and a web page of
// another site in the operator's browser on the gateway host (which may
// call without a key otherwise) cannot upload.
func TestNoKeyNoFiles(t *testing.T) {
	e := newEnv(t)
	body, ct := form(t, part{"purpose", "", "batch"}, part{"file", "a.jsonl", "{}\n"})
	code, out := send(t, "POST", e.Srv.URL+"/v1/files", "", body, "Content-Type", ct, "Origin", "https://evil.example",
		"Sec-Fetch-Site", "cross-site")
	wantOpenAIError(t, "a cross-site upload", code, http.StatusUnauthorized, out)
	code, out = send(t, "POST", e.Srv.URL+"/v1/files", "sk-wrong", body, "Content-Type", ct)
	wantOpenAIError(t, "a wrong key", code, http.StatusUnauthorized, out)
	code, out = send(t, "GET", e.Srv.URL+"/v1/files", "sk-wrong", nil)
	wantOpenAIError(t, "a wrong key lists", code, http.StatusUnauthorized, out)
	if names := e.stored(); len(names) != 0 {
		t.Fatalf("refused uploads left %v on disk", names)
	}
}

// The quota set through the management API holds: past the count a key
// may hold, an upload is a 403 that leaves nothing on disk.
func TestQuotaSetting(t *testing.T) {
	e := newEnv(t)
	r := e.Want(http.StatusOK, "GET", "/api/settings/files", nil).Object(t)
	if r["max_files_per_key"] != float64(files.DefaultMaxPerKey) || r["max_bytes_per_key"] != float64(files.DefaultMaxKeyBytes) {
		t.Fatalf("default quota %v", r)
	}
	e.Want(http.StatusOK, "PUT", "/api/settings/files", map[string]any{"max_files_per_key": 1, "max_bytes_per_key": 1 << 20, "max_total_bytes": 1 << 30})
	c := e.client(e.key())
	upload(t, c, "one", "user_data")
	_, err := c.Files.New(ctx, openai.FileNewParams{File: strings.NewReader("two"), Purpose: openai.FilePurposeUserData})
	if apiStatus(t, err) != http.StatusForbidden {
		t.Fatalf("past the quota: %v", err)
	}
	if names := e.stored(); len(names) != 1 {
		t.Fatalf("storage holds %v, want one file", names)
	}
}

// small is a Files API with a per-file cap of max bytes and at most one
// upload at a time, over the gateway of e (its key check and errors).
func small(t *testing.T, e *env, max int64) (url, dir string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "files")
	d, err := files.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := files.New(files.Options{Ops: e.App.API, DB: e.DB, Storage: d, MaxFileBytes: max, MaxUploads: 1})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, dir
}

func listDir(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range entries {
		out = append(out, x.Name())
	}
	return out
}

// A file past the cap is a 413 in OpenAI's shape, and nothing of it is
// left on disk; a file of exactly the cap is stored.
func TestUploadPastTheCap(t *testing.T) {
	e := newEnv(t)
	url, dir := small(t, e, 1000)
	c := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(e.key()), option.WithMaxRetries(0))
	_, err := c.Files.New(ctx, openai.FileNewParams{File: bytes.NewReader(make([]byte, 1001)), Purpose: openai.FilePurposeUserData})
	if apiStatus(t, err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("past the cap: %v", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Fatalf("a refused upload left %v", names)
	}
	f, err := c.Files.New(ctx, openai.FileNewParams{File: bytes.NewReader(make([]byte, 1000)), Purpose: openai.FilePurposeUserData})
	if err != nil || f.Bytes != 1000 {
		t.Fatalf("at the cap: %+v, %v", f, err)
	}
}

// Uploads are written one at a time at most (MaxUploads): another one
// meanwhile is a 429 with Retry-After; once the first ends, the next
// goes through.
func TestUploadsInProgressCap(t *testing.T) {
	e := newEnv(t)
	url, dir := small(t, e, 1<<20)
	key := e.key()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", url+"/v1/files", pr)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	mw.WriteField("purpose", "user_data")
	w, _ := mw.CreateFormFile("file", "slow.bin")
	w.Write(make([]byte, 1000))
	testenv.Eventually(t, "the first upload is being written", func() bool { return len(listDir(t, dir)) == 1 })
	body, ct := form(t, part{"purpose", "", "user_data"}, part{"file", "b", "x"})
	code, out := send(t, "POST", url+"/v1/files", key, body, "Content-Type", ct)
	wantOpenAIError(t, "a second upload meanwhile", code, http.StatusTooManyRequests, out)
	mw.Close()
	pw.Close()
	if got := <-done; got != http.StatusOK {
		t.Fatalf("the first upload: %d", got)
	}
	code, out = send(t, "POST", url+"/v1/files", key, body, "Content-Type", ct)
	if code != http.StatusOK {
		t.Fatalf("after the first: %d %s", code, out)
	}
}

// An upload slower than the server's read timeout (which bounds a whole
// request) goes through as long as its bytes keep coming.
func TestSlowUploadOutlivesTheReadTimeout(t *testing.T) {
	e := newEnv(t)
	d, err := files.NewDir(filepath.Join(t.TempDir(), "files"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := files.New(files.Options{Ops: e.App.API, DB: e.DB, Storage: d})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("purpose", "user_data")
		w, _ := mw.CreateFormFile("file", "slow.bin")
		for range 8 { // 1.2 s in all, four read timeouts
			w.Write(make([]byte, 100))
			time.Sleep(150 * time.Millisecond) // pacing the client, not an assertion
		}
		mw.Close()
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/files", pr)
	req.Header.Set("Authorization", "Bearer "+e.key())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"bytes":800`) {
		t.Fatalf("slow upload: %d %s", res.StatusCode, b)
	}
}

// The official client's auto-pager walks every page of a key's files
// (limit, after, has_more), each once (the order is the service suite's,
// on a fake clock).
func TestListAutoPaging(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.key())
	var want []string
	for i := range 5 {
		want = append([]string{upload(t, c, fmt.Sprint(i), "user_data").ID}, want...)
	}
	iter := c.Files.ListAutoPaging(ctx, openai.FileListParams{Limit: openai.Int(2)})
	var got []string
	for iter.Next() {
		got = append(got, iter.Current().ID)
		if len(got) > 10 {
			break
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
}

// Without a key, even where the gateway serves keyless clients (from
// its own host, or anyone with allow_anonymous), the Files API answers
// 401: keyless callers would share one scope.
func TestKeylessClientsHaveNoFiles(t *testing.T) {
	e := newEnv(t)
	// The test server is on the gateway host: a request without a key
	// is a keyless local client's, which the chat endpoints serve.
	body, ct := form(t, part{"purpose", "", "batch"}, part{"file", "a.jsonl", "{}\n"})
	code, out := send(t, "POST", e.Srv.URL+"/v1/files", "", body, "Content-Type", ct)
	wantOpenAIError(t, "a keyless upload", code, http.StatusUnauthorized, out)
	for _, path := range []string{"/v1/files", "/v1/files/file-x", "/v1/files/file-x/content"} {
		code, out = send(t, "GET", e.Srv.URL+path, "", nil)
		wantOpenAIError(t, "keyless GET "+path, code, http.StatusUnauthorized, out)
	}
	code, out = send(t, "DELETE", e.Srv.URL+"/v1/files/file-x", "", nil)
	wantOpenAIError(t, "a keyless delete", code, http.StatusUnauthorized, out)
	if names := e.stored(); len(names) != 0 {
		t.Fatalf("a keyless upload left %v", names)
	}
}
