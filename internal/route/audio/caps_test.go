package audio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/audio"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routetest"
)

// ops is the gateway transport reduced to what the caps need: the body
// limit, one target, errors in OpenAI's shape.
type ops struct{ adapter router.Adapter }

func (o ops) writeErr(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	var le *llm.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &le):
		status = le.Status
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
	}
	httpx.WriteJSON(w, status, map[string]any{"error": map[string]any{"message": err.Error(), "type": "invalid_request_error"}})
}

func (o ops) JSON(maxBody int64, h feature.OpHandler) http.Handler {
	return o.Body(maxBody, func(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		return h(w, r, b, run)
	})
}

func (o ops) Body(maxBody int64, h feature.BodyHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		run := func(op *pipeline.Op) (*pipeline.OpAnswer, error) {
			_, err := op.Call(r.Context(), router.Connection{ID: "c", Adapter: o.adapter}, router.Target{Provider: "p", Model: "m"})
			return &pipeline.OpAnswer{}, err
		}
		if err := h(w, r, run); err != nil {
			o.writeErr(w, err)
		}
	})
}

func (o ops) KeyID(context.Context) string { return "" }

// serve is the audio endpoints with opt over one target, adapter.
func serve(t *testing.T, adapter router.Adapter, opt audio.Options) *httptest.Server {
	mux := http.NewServeMux()
	audio.New(ops{adapter}, opt).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// An upload past the cap is a 413 whether the file was being streamed
// to the upstream (model first) or read to disk before routing (file
// first); nothing is left on disk, and an upstream never gets the whole
// file. Past the space of all uploads in flight, a 503.
func TestUploadCaps(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	dg := audio.NewClient(audio.TypeDeepgram, provider.Config{ID: "p", BaseURL: f.URL, APIKey: "k"})
	srv := serve(t, dg, audio.Options{TempDir: dir, MaxUpload: 256 << 10})
	big := audioBytes(300 << 10)
	for _, parts := range [][]part{
		{{name: "model", value: "p/nova-3"}, {name: "file", file: big}},
		{{name: "file", file: big}, {name: "model", value: "p/nova-3"}},
	} {
		body, ct := form(t, parts...)
		r := routetest.Send(t, http.DefaultClient, "POST", srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
		if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.Body), "larger than 262144 bytes") {
			t.Fatalf("status %d %s, want 413", r.Status, r.Body)
		}
		if left := dirEntries(t, dir); len(left) != 0 {
			t.Fatalf("left on disk: %v", left)
		}
	}
	for _, c := range f.all() {
		if c.fileSHA == sha(big) || c.fileSize >= int64(len(big)) {
			t.Fatalf("the upstream got the whole oversized file (%d bytes)", c.fileSize)
		}
	}

	srv = serve(t, dg, audio.Options{TempDir: dir, MaxUpload: 1 << 20, MaxSpool: 100 << 10})
	body, ct := form(t, part{name: "file", file: big}, part{name: "model", value: "p/nova-3"})
	r := routetest.Send(t, http.DefaultClient, "POST", srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "space for uploads") {
		t.Fatalf("status %d %s, want 503", r.Status, r.Body)
	}
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Fatalf("left on disk: %v", left)
	}
}

// An AssemblyAI transcript that never completes is waited for no longer
// than the poll bound: a 504.
func TestAssemblyAIPollIsBounded(t *testing.T) {
	var polls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v2/upload":
			io.WriteString(w, `{"upload_url":"https://cdn.assemblyai.com/upload/x"}`)
		default:
			if r.Method == http.MethodGet {
				polls.Add(1)
			}
			io.WriteString(w, `{"id":"t1","status":"processing"}`)
		}
	}))
	defer up.Close()
	c := audio.NewClient(audio.TypeAssemblyAI, provider.Config{ID: "aai", BaseURL: up.URL, APIKey: "k"})
	srv := serve(t, c, audio.Options{TempDir: t.TempDir(), MaxPoll: 400 * time.Millisecond})
	body, ct := form(t, part{name: "model", value: "aai/best"}, part{name: "file", file: audioBytes(1000)})
	r := routetest.Send(t, http.DefaultClient, "POST", srv.URL+"/v1/audio/transcriptions", body, "Content-Type", ct)
	if r.Status != http.StatusGatewayTimeout || !strings.Contains(string(r.Body), "not completed within 400ms") {
		t.Fatalf("status %d %s, want 504", r.Status, r.Body)
	}
	if n := polls.Load(); n < 1 || n > 10 {
		t.Fatalf("%d polls in 400ms", n)
	}
}

// A speech upstream that breaks off after its answer began cuts the
// client's connection: the client cannot take a truncated file for a
// whole one.
func TestSpeechCutShort(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Header().Set("Content-Length", "1000")
		w.Write(bytes.Repeat([]byte("a"), 100))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer up.Close()
	srv := serve(t, &openai.Client{BaseURL: up.URL, Provider: "p"}, audio.Options{TempDir: t.TempDir()})
	b, _ := json.Marshal(map[string]any{"model": "p/tts-1", "input": "hello", "voice": "alloy"})
	res, err := http.Post(srv.URL+"/v1/audio/speech", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if res.StatusCode != 200 || err == nil {
		t.Fatalf("status %d, read %d bytes, err %v: want a broken body", res.StatusCode, len(got), err)
	}
}

// Uploads a stopped gateway left in its upload directory are removed at
// start; other files there are not.
func TestStaleUploadsSwept(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"upload-1.part", "upload-2.part", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := audio.New(ops{}, audio.Options{TempDir: dir}).Module().Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := dirEntries(t, dir); len(left) != 1 || left[0] != "keep.txt" {
		t.Fatalf("left %v", left)
	}
}

// An upload may last longer than the server's read timeout while it
// keeps coming; one that stalls for longer than the idle bound is cut
// (400) and leaves nothing on disk. The client paces its writes; the
// assertions are on what the server answered.
func TestUploadDeadline(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	dg := audio.NewClient(audio.TypeDeepgram, provider.Config{ID: "p", BaseURL: f.URL, APIKey: "k"})
	mux := http.NewServeMux()
	audio.New(ops{dg}, audio.Options{TempDir: dir, UploadIdle: 400 * time.Millisecond}).Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout = 500 * time.Millisecond
	srv.Start()
	defer srv.Close()
	upload := func(chunks int, pause time.Duration, stallAt int) (int, string) {
		pr, pw := io.Pipe()
		defer pr.Close()
		mw := multipart.NewWriter(pw)
		go func() {
			mw.WriteField("model", "p/nova-3")
			w, _ := mw.CreateFormFile("file", "a.mp3")
			chunk := audioBytes(8 << 10)
			for i := range chunks {
				if _, err := w.Write(chunk); err != nil {
					pw.CloseWithError(err)
					return
				}
				d := pause
				if i == stallAt {
					d = 2 * time.Second
				}
				time.Sleep(d)
			}
			pw.CloseWithError(mw.Close())
		}()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/audio/transcriptions", pr)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// 12 chunks 100 ms apart: 1.2 s, more than the 500 ms read timeout.
	if status, body := upload(12, 100*time.Millisecond, -1); status != 200 || !strings.Contains(body, "spacewalk") {
		t.Fatalf("a steady upload longer than the read timeout: %d %s", status, body)
	}
	if status, body := upload(4, 100*time.Millisecond, 1); status != 400 || !strings.Contains(body, "broke off") {
		t.Fatalf("a stalled upload: %d %s", status, body)
	}
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Fatalf("left on disk: %v", left)
	}
}
