package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// eachDB runs f on a migrated SQLite database and a migrated PostgreSQL
// one (skipped when there is none, unless OMNI_TEST_STRICT=1).
func eachDB(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "omni.db")
			if d == "postgres" {
				dsn = testenv.Postgres(t)
			}
			ctx := context.Background()
			db, err := sqldb.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := sqldb.Migrate(ctx, db, "route_media", Migrations()); err != nil {
				t.Fatal(err)
			}
			f(t, db)
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newJob(id, key string, at time.Time, life time.Duration) *Job {
	return &Job{ID: id, Kind: Video, KeyID: key, Model: "p/m", Prompt: "p", Seconds: 4, Status: Queued,
		CreatedAt: ms(at), ExpiresAt: ms(at.Add(life))}
}

// The store scopes jobs to their key and kind, caps a key's active jobs
// (under concurrent reservations too), and forgets jobs at their expiry.
func TestStore(t *testing.T) {
	eachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := NewStore(db)
		now := ms(t0)
		if err := s.Reserve(ctx, newJob("a1", "ka", t0, time.Hour), 2, now); err != nil {
			t.Fatal(err)
		}
		if j, err := s.Get(ctx, Video, "ka", "a1", now); err != nil || j.Status != Queued || j.Seconds != 4 || j.ExpiresAt != ms(t0.Add(time.Hour)) {
			t.Fatalf("get %+v %v", j, err)
		}
		for _, c := range []struct {
			kind     Kind
			key, id  string
			at       int64
			wantFind bool
		}{
			{Video, "kb", "a1", now, false},
			{Video, "", "a1", now, false},
			{Music, "ka", "a1", now, false},
			{Video, "ka", "a1", ms(t0.Add(time.Hour - time.Millisecond)), true},
			{Video, "ka", "a1", ms(t0.Add(time.Hour)), false},
		} {
			if _, err := s.Get(ctx, c.kind, c.key, c.id, c.at); (err == nil) != c.wantFind || (err != nil && !errors.Is(err, ErrNotFound)) {
				t.Fatalf("get %+v: %v", c, err)
			}
		}

		// Two active jobs is the cap of ka; 16 concurrent reservations of
		// kb get exactly two through.
		if err := s.Reserve(ctx, newJob("a2", "ka", t0, time.Hour), 2, now); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, newJob("a3", "ka", t0, time.Hour), 2, now); !errors.Is(err, ErrTooMany) {
			t.Fatalf("third job: %v", err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Reserve(ctx, newJob("b"+string(rune('a'+i)), "kb", t0, time.Hour), 2, now)
			}()
		}
		wg.Wait()
		close(errs)
		ok := 0
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrTooMany):
				t.Fatal(err)
			}
		}
		if ok != 2 {
			t.Fatalf("%d concurrent reservations got through, want 2", ok)
		}

		// A finished job no longer counts; an expired one neither.
		j, _ := s.Get(ctx, Video, "ka", "a1", now)
		j.Status, j.UpstreamID = Completed, "up-1"
		if err := s.Save(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, newJob("a3", "ka", t0, time.Hour), 2, now); err != nil {
			t.Fatal(err)
		}
		later := ms(t0.Add(2 * time.Hour))
		if err := s.Reserve(ctx, newJob("a4", "ka", t0.Add(2*time.Hour), time.Hour), 2, later); err != nil {
			t.Fatalf("after the others expired: %v", err)
		}

		// A poll is claimed once per due time.
		j2, _ := s.Get(ctx, Video, "ka", "a2", now)
		j2.UpstreamID, j2.NextPollAt = "up-2", now
		if err := s.Save(ctx, j2); err != nil {
			t.Fatal(err)
		}
		if due, err := s.Due(ctx, now, 10); err != nil || len(due) != 1 || due[0].ID != "a2" {
			t.Fatalf("due %v %v", due, err)
		}
		if won, err := s.Claim(ctx, "a2", now, now+1000); !won || err != nil {
			t.Fatalf("first claim %v %v", won, err)
		}
		if won, err := s.Claim(ctx, "a2", now, now+1000); won || err != nil {
			t.Fatalf("second claim %v %v", won, err)
		}

		// The sweep deletes what expired, and only that.
		// a1, a2, a3 and the two kb jobs expired at t0+1h; a4 lives.
		if n, err := s.Sweep(ctx, later); err != nil || n != 5 {
			t.Fatalf("swept %d (%v), want 5", n, err)
		}
		if _, err := s.Get(ctx, Video, "ka", "a4", later); err != nil {
			t.Fatalf("the living job was swept: %v", err)
		}
	})
}

// gen is a generator whose polls answer status, and whose content is
// body with the given length (-1: unknown).
type gen struct {
	mu     sync.Mutex
	status Status
	polls  int
	body   []byte
	length int64
	// stream, when set, is the content instead of body.
	stream func() io.Reader
	// pollErr, when set, is every poll's answer.
	pollErr error
}

func (g *gen) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	return nil, errors.New("no")
}
func (g *gen) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	return nil, errors.New("no")
}
func (g *gen) Serves(Kind) bool { return true }
func (g *gen) Submit(context.Context, *Request) (*Task, error) {
	return &Task{ID: "up", Status: Queued}, nil
}
func (g *gen) Poll(context.Context, Kind, string, string) (*Task, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.polls++
	if g.pollErr != nil {
		return nil, g.pollErr
	}
	return &Task{ID: "up", Status: g.status}, nil
}
func (g *gen) Content(context.Context, Kind, *Task) (*http.Response, error) {
	var body io.Reader = bytes.NewReader(g.body)
	if g.stream != nil {
		body = g.stream()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/html"}}, ContentLength: g.length,
		Body: io.NopCloser(body)}, nil
}

type conns map[string][]router.Connection

func (c conns) Connections(p string) []router.Connection { return c[p] }

// ops is the gateway's operations reduced to what reads of jobs use:
// the key is the X-Key header, errors are rendered as the gateway does.
type ops struct{}

func (ops) JSON(int64, feature.OpHandler) http.Handler { return http.NotFoundHandler() }
func (ops) Body(_ int64, h feature.BodyHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, r.Header.Get("X-Key"))), nil); err != nil {
			var le *llm.Error
			if errors.As(err, &le) {
				httpx.WriteJSON(w, le.Status, map[string]any{"error": map[string]any{"message": le.Message, "code": le.Code}})
				return
			}
			w.WriteHeader(500)
		}
	})
}
func (ops) KeyID(ctx context.Context) string { s, _ := ctx.Value(keyCtx{}).(string); return s }

type keyCtx struct{}

// service is a Service over db with a fake clock and generator, and a
// submitted job "j1" of key k at t0.
func service(t testing.TB, db *sqldb.DB, g *gen) (*Service, *clock.Fake, *httptest.Server) {
	return serviceCap(t, db, g, 1000)
}

func serviceCap(t testing.TB, db *sqldb.DB, g *gen, maxContent int64) (*Service, *clock.Fake, *httptest.Server) {
	t.Helper()
	clk := clock.NewFake(t0)
	s := New(ops{}, conns{"p": {{ID: "p#1", Adapter: g}}}, db, Config{Clock: clk, MaxContent: maxContent})
	j := newJob("j1", "k", t0, s.cfg.Lifetime)
	if err := s.store.Reserve(context.Background(), j, 8, ms(t0)); err != nil {
		t.Fatal(err)
	}
	j.Provider, j.Connection, j.UpstreamModel = "p", "p#1", "m"
	s.apply(j, &Task{ID: "up", Status: Queued}, ms(t0))
	if err := s.store.Save(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, clk, srv
}

func get(t testing.TB, srv *httptest.Server, path string) (int, string, error) {
	code, body, _, err := getH(t, srv, path)
	return code, body, err
}

func getH(t testing.TB, srv *httptest.Server, path string) (int, string, http.Header, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("X-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// With the clock moved on: the background loop polls due jobs (no more
// often than the poll delay), fails one the upstream has not finished
// within the run time, and deletes jobs at the end of their lifetime.
func TestLifetimeWithFakeClock(t *testing.T) {
	eachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		g := &gen{status: InProgress}
		s, clk, srv := service(t, db, g)
		s.Tick(ctx)
		if g.polls != 0 {
			t.Fatalf("polled %d times before the poll was due", g.polls)
		}
		clk.Advance(MinPollDelay)
		s.Tick(ctx)
		s.Tick(ctx)
		if g.polls != 1 {
			t.Fatalf("polled %d times once due, want 1", g.polls)
		}
		if code, body, _ := get(t, srv, "/v1/videos/generations/j1"); code != 200 || !strings.Contains(body, `"status":"in_progress"`) {
			t.Fatalf("job %d %s", code, body)
		}
		clk.Advance(DefaultMaxRunTime)
		s.Tick(ctx)
		code, body, _ := get(t, srv, "/v1/videos/generations/j1")
		if code != 200 || !strings.Contains(body, `"status":"failed"`) || !strings.Contains(body, `"code":"generation_timeout"`) {
			t.Fatalf("job past its run time: %d %s", code, body)
		}
		if g.polls != 1 {
			t.Fatalf("a job past its run time was polled (%d)", g.polls)
		}
		clk.Set(t0.Add(DefaultLifetime - time.Millisecond))
		if code, _, _ := get(t, srv, "/v1/videos/generations/j1"); code != 200 {
			t.Fatalf("job before its expiry: %d", code)
		}
		clk.Set(t0.Add(DefaultLifetime))
		if code, body, _ := get(t, srv, "/v1/videos/generations/j1"); code != 404 || !strings.Contains(body, "job_not_found") {
			t.Fatalf("expired job: %d %s", code, body)
		}
		s.Tick(ctx)
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM gateway_media_jobs").Scan(&n); err != nil || n != 0 {
			t.Fatalf("rows after the sweep: %d %v", n, err)
		}
	})
}

// The content passed on is capped: a file the upstream says is larger
// is a 502 before any byte; one that turns out larger cuts the
// connection, so the client cannot take a truncated file for a whole
// one. The upstream's content type is not trusted (no text/html).
func TestContentCap(t *testing.T) {
	eachDB(t, func(t *testing.T, db *sqldb.DB) {
		for _, c := range []struct {
			name   string
			size   int
			length int64
		}{{"declared", 2000, 2000}, {"undeclared", 2000, -1}, {"fits", 1000, -1}} {
			t.Run(c.name, func(t *testing.T) {
				g := &gen{status: Completed, body: bytes.Repeat([]byte("x"), c.size), length: c.length}
				_, clk, srv := service(t, db, g)
				clk.Advance(time.Second)
				code, body, h, err := getH(t, srv, "/v1/videos/generations/j1/content")
				switch c.name {
				case "declared":
					if code != http.StatusBadGateway || !strings.Contains(body, "content_too_large") {
						t.Fatalf("%d %s", code, body)
					}
				case "undeclared":
					if err == nil {
						t.Fatalf("a file past the cap read whole: %d, %d bytes", code, len(body))
					}
				default:
					if code != 200 || len(body) != 1000 || err != nil || h.Get("Content-Type") != "application/octet-stream" {
						t.Fatalf("%d, %d bytes, %v", code, len(body), err)
					}
				}
				if _, err := db.Exec(context.Background(), "DELETE FROM gateway_media_jobs"); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// zeros is an endless reader of zero bytes that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// BenchmarkContent measures a 64 MiB download streamed through the
// gateway from its upstream: MB/s, and bytes allocated per download
// (constant, not proportional to the file).
//
//	go test ./internal/route/media -run '^$' -bench Content -benchmem
func BenchmarkContent(b *testing.B) {
	const size = 64 << 20
	db, err := sqldb.Open(context.Background(), filepath.Join(b.TempDir(), "omni.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := sqldb.Migrate(context.Background(), db, "route_media", Migrations()); err != nil {
		b.Fatal(err)
	}
	g := &gen{status: Completed, length: size, stream: func() io.Reader { return io.LimitReader(zeros{}, size) }}
	_, clk, srv := serviceCap(b, db, g, DefaultMaxContent)
	clk.Advance(time.Second)
	req, _ := http.NewRequest("GET", srv.URL+"/v1/videos/generations/j1/content", nil)
	req.Header.Set("X-Key", "k")
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("%d bytes, %v", n, err)
		}
	}
}

// A poll that fails leaves the job as it was, to be polled again; an
// upstream that no longer knows the job, or a connection that is gone,
// fails it.
func TestPollFailures(t *testing.T) {
	eachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for _, c := range []struct {
			name   string
			err    error
			remove bool
			want   string
		}{
			{"upstream down", &llm.Error{Status: 503, Message: "down"}, false, `"status":"queued"`},
			{"timeout", context.DeadlineExceeded, false, `"status":"queued"`},
			{"job unknown upstream", &llm.Error{Status: 404, Message: "no such task"}, false, `"code":"upstream_job_not_found"`},
			{"connection removed", nil, true, `"code":"upstream_unavailable"`},
		} {
			t.Run(c.name, func(t *testing.T) {
				g := &gen{status: InProgress, pollErr: c.err}
				s, clk, srv := service(t, db, g)
				if c.remove {
					s.conns = conns{}
				}
				clk.Advance(time.Second)
				s.Tick(ctx)
				code, body, _ := get(t, srv, "/v1/videos/generations/j1")
				if code != 200 || !strings.Contains(body, c.want) {
					t.Fatalf("%d %s, want %s", code, body, c.want)
				}
				if c.want == `"status":"queued"` {
					// Polled again once due.
					clk.Advance(DefaultPollInterval)
					s.Tick(ctx)
					if g.polls != 2 {
						t.Fatalf("polls %d, want 2", g.polls)
					}
				}
				if _, err := db.Exec(ctx, "DELETE FROM gateway_media_jobs"); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}
