package batches

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// Every behaviour runs on SQLite and on PostgreSQL (OMNI_TEST_STRICT=1
// makes a missing PostgreSQL a failure).
func TestSQLite(t *testing.T) { runSuite(t, sqliteDSN) }

func TestPostgres(t *testing.T) {
	testenv.Postgres(t)
	runSuite(t, postgresDSN)
}

func runSuite(t *testing.T, open opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open opener)
	}{
		{"RunsEveryLineOnce", testRunsEveryLine},
		{"ScopedToTheKey", testScoped},
		{"Cancel", testCancel},
		{"ResumesWithoutRunningALineTwice", testResume},
		{"ReplicasRunEachLineOnce", testReplicas},
		{"Expiry", testExpiry},
		{"Caps", testCaps},
		{"YieldsToInteractiveTraffic", testYield},
		{"ListAndDelete", testListDelete},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// A batch runs each request line once through the gateway as the
// batch's key; lines that are not JSON, lack custom_id or url, or name
// another endpoint get their error in the error file while the rest
// run; an upstream failure is the line's answer in the error file.
func testRunsEveryLine(t *testing.T, open opener) {
	gw := newFakeGateway()
	gw.status["p3"] = 500
	e := newEnv(t, open(t), Config{}, newMemFiles(), gw, clock.NewFake(t0))
	input := chatLines(5) + "this is not json\n" + `{"method":"POST","url":"/v1/chat/completions","body":{}}` + "\n\n" +
		`{"custom_id":"other","method":"POST","url":"/v1/embeddings","body":{"model":"e","input":"x"}}` + "\n" +
		`{"custom_id":"nourl","method":"POST","body":{}}` + "\n" +
		`{"custom_id":"streams","method":"POST","url":"/v1/chat/completions","body":{"model":"m","stream":true}}`
	fid := e.files.add("k1", input)
	b := e.create("k1", fid)
	if b["object"] != "batch" || !strings.HasPrefix(b["id"].(string), "batch_") || b["status"] != "validating" ||
		b["endpoint"] != "/v1/chat/completions" || b["completion_window"] != "24h" || b["input_file_id"] != fid ||
		b["expires_at"].(float64) != float64(t0.Add(24*time.Hour).Unix()) {
		t.Fatalf("created %v", b)
	}
	id := b["id"].(string)
	b = e.waitStatus("k1", id, "completed")
	if c := counts(b); c != [3]int{10, 4, 6} {
		t.Fatalf("request_counts %v, want total 10, completed 4, failed 6", c)
	}
	if b["completed_at"] == nil || b["in_progress_at"] == nil || b["finalizing_at"] == nil {
		t.Fatalf("timestamps %v", b)
	}
	for i := range 5 {
		if n := gw.served(fmt.Sprintf("p%d", i)); n != 1 {
			t.Fatalf("line p%d served %d times", i, n)
		}
	}
	if gw.total() != 5 || gw.keys["k1"] != 5 {
		t.Fatalf("served %d, as k1 %d", gw.total(), gw.keys["k1"])
	}
	out := e.fileLines(b["output_file_id"])
	if len(out) != 4 {
		t.Fatalf("output has %d lines", len(out))
	}
	for _, o := range out {
		if o.Response == nil || o.Response.StatusCode != 200 || o.Error != nil || !strings.HasPrefix(o.ID, "batch_req_") ||
			!strings.Contains(string(o.Response.Body), `"echo p`) || o.Response.RequestID == "" {
			t.Fatalf("output line %+v", o)
		}
	}
	if f := e.files.get(t, b["output_file_id"].(string)); f.owner != "k1" || f.purpose != "batch_output" {
		t.Fatalf("output file %v %v", f.owner, f.purpose)
	}
	errs := e.fileLines(b["error_file_id"])
	codes := map[string]string{}
	for _, o := range errs {
		cid := ""
		if o.CustomID != nil {
			cid = *o.CustomID
		}
		switch {
		case o.Error != nil:
			codes[o.Error.Code+":"+cid] = o.Error.Message
		case o.Response != nil:
			codes[fmt.Sprint(o.Response.StatusCode)+":"+cid] = ""
		}
	}
	for _, want := range []string{"500:req-3", "invalid_json_line:", "missing_custom_id:", "mismatched_endpoint:other", "missing_url:nourl", "stream_unsupported:streams"} {
		if _, ok := codes[want]; !ok {
			t.Errorf("error file lacks %s: %v", want, codes)
		}
	}
}

// Another key's batch is a 404 everywhere, and its files are not a
// batch's input.
func testScoped(t *testing.T, open opener) {
	gw := newFakeGateway()
	e := newEnv(t, open(t), Config{}, newMemFiles(), gw, clock.NewFake(t0))
	fid := e.files.add("k1", chatLines(2))
	id := e.create("k1", fid)["id"].(string)
	e.waitStatus("k1", id, "completed")
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/batches/" + id}, {"POST", "/v1/batches/" + id + "/cancel"}, {"DELETE", "/v1/batches/" + id},
	} {
		for _, key := range []string{"k2", ""} {
			status, b := e.do(key, c.method, c.path, nil)
			if status != 404 || b["error"].(map[string]any)["type"] != "invalid_request_error" {
				t.Fatalf("%s %s as %q: %d %v", c.method, c.path, key, status, b)
			}
		}
	}
	if _, b := e.do("k2", "GET", "/v1/batches", nil); len(b["data"].([]any)) != 0 {
		t.Fatalf("k2 lists %v", b)
	}
	status, b := e.do("k2", "POST", "/v1/batches", map[string]any{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	if status != 404 {
		t.Fatalf("k2 using k1's file: %d %v", status, b)
	}
	if gw.keys["k2"] != 0 {
		t.Fatal("a line ran as k2")
	}
}

// Cancelling stops claiming lines; the lines in flight finish and are
// in the output; the batch ends cancelled.
func testCancel(t *testing.T, open opener) {
	gw := newFakeGateway()
	gw.block = make(chan struct{})
	gw.started = make(chan string, 100)
	e := newEnv(t, open(t), Config{Runner: RunnerConfig{Concurrency: 2}}, newMemFiles(), gw, clock.NewFake(t0))
	id := e.create("k1", e.files.add("k1", chatLines(20)))["id"].(string)
	<-gw.started
	<-gw.started
	status, b := e.do("k1", "POST", "/v1/batches/"+id+"/cancel", nil)
	if status != 200 || b["status"] != "cancelling" || b["cancelling_at"] == nil {
		t.Fatalf("cancel: %d %v", status, b)
	}
	close(gw.block)
	b = e.waitStatus("k1", id, "cancelled")
	if gw.total() != 2 {
		t.Fatalf("%d lines ran, want the 2 in flight", gw.total())
	}
	if c := counts(b); c != [3]int{20, 2, 0} || len(e.fileLines(b["output_file_id"])) != 2 || b["cancelled_at"] == nil {
		t.Fatalf("cancelled batch %v", b)
	}
	if status, b := e.do("k1", "POST", "/v1/batches/"+id+"/cancel", nil); status != 409 {
		t.Fatalf("cancelling a cancelled batch: %d %v", status, b)
	}
}

// A process that stopped with lines in flight: once their lease runs
// out they are recorded as interrupted (not run again: the upstream may
// have had them), and the lines it had not started run once.
func testResume(t *testing.T, open opener) {
	dsn := open(t)
	clk := clock.NewFake(t0)
	gw := newFakeGateway()
	e := newEnv(t, dsn, Config{}, newMemFiles(), gw, clk)
	e.stop() // no runner yet
	id := e.create("k1", e.files.add("k1", chatLines(10)))["id"].(string)
	// Validate and claim three lines as a process that then dies.
	st := NewStore(e.db)
	rec, ok, err := st.claimBatch(context.Background(), "('validating')", "dead", t0.UnixMilli(), t0.Add(time.Minute).UnixMilli())
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	dead := &Runner{s: e.svc, d: gw, cfg: RunnerConfig{}.withDefaults(), owner: "dead"}
	dead.validate(context.Background(), rec)
	lines, err := st.claimLines(context.Background(), id, "dead", 3, t0.Add(2*time.Minute).UnixMilli())
	if err != nil || len(lines) != 3 {
		t.Fatal(len(lines), err)
	}
	// A new process starts: the dead one's lines wait for their lease.
	e.start()
	testenv.Eventually(t, "the lines not claimed run", func() bool { return gw.total() == 7 })
	if b := e.get("k1", id); b["status"] != "in_progress" {
		t.Fatalf("finished with lines in flight: %v", b)
	}
	clk.Advance(3 * time.Minute)
	b := e.waitStatus("k1", id, "completed")
	if c := counts(b); c != [3]int{10, 7, 3} || gw.total() != 7 {
		t.Fatalf("counts %v, served %d", c, gw.total())
	}
	for _, l := range lines {
		if gw.served(fmt.Sprintf("p%d", l.N-1)) != 0 {
			t.Fatalf("line %d was run again", l.N)
		}
	}
	for _, o := range e.fileLines(b["error_file_id"]) {
		if o.Error == nil || o.Error.Code != "interrupted" {
			t.Fatalf("error line %+v", o)
		}
	}
}

// Two replicas on one database run one batch together, each line once.
func testReplicas(t *testing.T, open opener) {
	dsn := open(t)
	clk := clock.NewFake(t0)
	gw, files := newFakeGateway(), newMemFiles()
	cfg := Config{Runner: RunnerConfig{Concurrency: 8}}
	a := newEnv(t, dsn, cfg, files, gw, clk)
	b := newEnv(t, dsn, cfg, files, gw, clk)
	const n = 300
	id := a.create("k1", files.add("k1", chatLines(n)))["id"].(string)
	out := b.waitStatus("k1", id, "completed")
	if c := counts(out); c != [3]int{n, n, 0} {
		t.Fatalf("counts %v", c)
	}
	for i := range n {
		if s := gw.served(fmt.Sprintf("p%d", i)); s != 1 {
			t.Fatalf("line %d served %d times", i, s)
		}
	}
	if got := len(a.fileLines(out["output_file_id"])); got != n {
		t.Fatalf("output has %d lines", got)
	}
}

// The 24h window: the lines not run by then are batch_expired errors,
// the batch ends expired.
func testExpiry(t *testing.T, open opener) {
	clk := clock.NewFake(t0)
	gw := newFakeGateway()
	gw.block = make(chan struct{})
	gw.started = make(chan string, 100)
	e := newEnv(t, open(t), Config{Runner: RunnerConfig{Concurrency: 1}}, newMemFiles(), gw, clk)
	id := e.create("k1", e.files.add("k1", chatLines(5)))["id"].(string)
	<-gw.started
	clk.Advance(24*time.Hour + time.Second)
	testenv.Eventually(t, "finalizing", func() bool { return e.get("k1", id)["status"] == "finalizing" })
	close(gw.block)
	b := e.waitStatus("k1", id, "expired")
	if c := counts(b); c != [3]int{5, 1, 4} || b["expired_at"] == nil || gw.total() != 1 {
		t.Fatalf("expired batch %v, served %d", b, gw.total())
	}
	errs := e.fileLines(b["error_file_id"])
	if len(errs) != 4 || errs[0].Error == nil || errs[0].Error.Code != "batch_expired" {
		t.Fatalf("error file %+v", errs)
	}
}

// The caps: lines per file, line size, unfinished batches per key, and
// bad requests are 4xx in OpenAI's shape.
func testCaps(t *testing.T, open opener) {
	gw := newFakeGateway()
	gw.block = make(chan struct{})
	defer close(gw.block)
	e := newEnv(t, open(t), Config{Limits: Limits{MaxLines: 3, MaxLineBytes: 300, MaxActivePerKey: 2, MaxInputBytes: 2000}},
		newMemFiles(), gw, clock.NewFake(t0))

	id := e.create("k1", e.files.add("k1", chatLines(4)))["id"].(string)
	b := e.waitStatus("k1", id, "failed")
	if errs := b["errors"].(map[string]any)["data"].([]any); errs[0].(map[string]any)["code"] != "too_many_requests" || b["failed_at"] == nil {
		t.Fatalf("too many lines: %v", b)
	}
	id = e.create("k1", e.files.add("k1", strings.Repeat("x", 2001)))["id"].(string)
	if b := e.waitStatus("k1", id, "failed"); b["errors"].(map[string]any)["data"].([]any)[0].(map[string]any)["code"] != "file_too_large" {
		t.Fatalf("large file: %v", b)
	}
	long := chatLine("long", strings.Repeat("y", 400))
	id = e.create("k1", e.files.add("k1", long+"\n"+chatLine("ok", "p0")))["id"].(string)
	testenv.Eventually(t, "the short line runs", func() bool { return gw.served("p0") == 1 })
	if c := counts(e.get("k1", id)); c != [3]int{2, 0, 1} {
		t.Fatalf("long line: %v", c)
	}
	// Two unfinished batches is the most a key has.
	e.create("k1", e.files.add("k1", chatLines(1)))
	status, out := e.do("k1", "POST", "/v1/batches", map[string]any{"input_file_id": e.files.add("k1", chatLines(1)), "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	if status != 429 || out["error"].(map[string]any)["code"] != "too_many_batches" {
		t.Fatalf("third unfinished batch: %d %v", status, out)
	}
	fid := e.files.add("k2", chatLines(1))
	bigMeta := map[string]any{}
	for i := range 17 {
		bigMeta[fmt.Sprint(i)] = "v"
	}
	for _, body := range []map[string]any{
		{"endpoint": "/v1/chat/completions", "completion_window": "24h"},
		{"input_file_id": fid, "endpoint": "/v1/images/generations", "completion_window": "24h"},
		{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "1h"},
		{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": bigMeta},
		{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": map[string]any{"k": strings.Repeat("v", 513)}},
		{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": map[string]any{"k": 1}},
	} {
		status, out := e.do("k2", "POST", "/v1/batches", body)
		if status != 400 || out["error"].(map[string]any)["type"] != "invalid_request_error" {
			t.Fatalf("%v: %d %v", body, status, out)
		}
	}
	if status, out := e.do("k2", "GET", "/v1/batches?limit=101", nil); status != 400 {
		t.Fatalf("limit 101: %d %v", status, out)
	}
	status, out = e.do("k2", "POST", "/v1/batches", map[string]any{"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h",
		"metadata": map[string]any{"team": "a"}})
	if status != 200 || out["metadata"].(map[string]any)["team"] != "a" {
		t.Fatalf("metadata: %d %v", status, out)
	}
}

// While interactive requests in flight exceed the threshold the runner
// runs one line at a time; once they fall back, its full concurrency.
func testYield(t *testing.T, open opener) {
	gw := newFakeGateway()
	gw.interactive = 100
	gw.block = make(chan struct{})
	gw.started = make(chan string, 100)
	e := newEnv(t, open(t), Config{Runner: RunnerConfig{Concurrency: 4, YieldAbove: 10}}, newMemFiles(), gw, clock.NewFake(t0))
	id := e.create("k1", e.files.add("k1", chatLines(8)))["id"].(string)
	<-gw.started
	// The runner looks at the load every 2ms; a second line would start
	// within a few of those.
	select {
	case p := <-gw.started:
		t.Fatalf("a second line (%s) started while interactive traffic was high", p)
	case <-time.After(100 * time.Millisecond):
	}
	gw.mu.Lock()
	gw.interactive = 0
	gw.mu.Unlock()
	for range 3 {
		<-gw.started
	}
	gw.mu.Lock()
	in := gw.inflight
	gw.mu.Unlock()
	if in != 4 {
		t.Fatalf("%d lines in flight, want 4", in)
	}
	close(gw.block)
	e.waitStatus("k1", id, "completed")
	if gw.maxInflight > 4 {
		t.Fatalf("%d lines were in flight at once", gw.maxInflight)
	}
}

// Batches list newest first, paged with limit and after; only finished
// batches can be deleted.
func testListDelete(t *testing.T, open opener) {
	gw := newFakeGateway()
	clk := clock.NewFake(t0)
	e := newEnv(t, open(t), Config{}, newMemFiles(), gw, clk)
	var ids []string
	for range 3 {
		id := e.create("k1", e.files.add("k1", chatLines(1)))["id"].(string)
		e.waitStatus("k1", id, "completed")
		ids = append(ids, id)
		clk.Advance(time.Second)
	}
	slices.Reverse(ids)
	_, p := e.do("k1", "GET", "/v1/batches?limit=2", nil)
	data := p["data"].([]any)
	if len(data) != 2 || data[0].(map[string]any)["id"] != ids[0] || data[1].(map[string]any)["id"] != ids[1] || p["has_more"] != true ||
		p["object"] != "list" || p["first_id"] != ids[0] || p["last_id"] != ids[1] {
		t.Fatalf("page 1 %v", p)
	}
	_, p = e.do("k1", "GET", "/v1/batches?limit=2&after="+ids[1], nil)
	if data := p["data"].([]any); len(data) != 1 || data[0].(map[string]any)["id"] != ids[2] || p["has_more"] != false {
		t.Fatalf("page 2 %v", p)
	}
	gw.block = make(chan struct{})
	defer close(gw.block)
	running := e.create("k1", e.files.add("k1", chatLines(1)))["id"].(string)
	if status, b := e.do("k1", "DELETE", "/v1/batches/"+running, nil); status != 409 {
		t.Fatalf("deleting an unfinished batch: %d %v", status, b)
	}
	status, b := e.do("k1", "DELETE", "/v1/batches/"+ids[0], nil)
	if status != 200 || b["deleted"] != true || b["object"] != "batch.deleted" {
		t.Fatalf("delete: %d %v", status, b)
	}
	if status, _ := e.do("k1", "GET", "/v1/batches/"+ids[0], nil); status != 404 {
		t.Fatalf("deleted batch: %d", status)
	}
	raw, _ := json.Marshal(b)
	_ = raw
	_ = http.StatusOK
}
