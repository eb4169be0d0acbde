// Command routebench measures what the OmniRoute gateway adds on top of its
// upstream. In one run it starts an instant OpenAI-format upstream in this
// process, builds and starts the real `omni serve route` pointing a
// provider of type openai at it, and compares, with interleaved rounds so
// machine noise hits both sides alike:
//
//   - latency at concurrency 1, direct (client → upstream) against the
//     gateway, OpenAI → OpenAI and Anthropic → OpenAI;
//   - time to the first content byte of a stream, the same ways;
//   - the highest request rate with p99 under 50 ms and no errors, stepping
//     concurrency, for the gateway and for the upstream alone (the ceiling);
//   - the gateway's resident memory idle and at its peak.
//
// Figures are printed beside their targets and as ratios against the
// direct baseline. Everything runs on loopback and every loop is bounded.
//
//	go run ./internal/bench/routebench [-bin omni] [-samples 3000] [-step 5s] [-levels 8,16,32,64,128]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Targets the figures are judged against.
const (
	targetAddedP99      = 500 * time.Microsecond // OpenAI → OpenAI, concurrency 1
	targetAddedP99Trans = time.Millisecond       // Anthropic → OpenAI, concurrency 1
	targetAddedTTFT     = time.Millisecond
	targetRPS           = 5000
	targetIdleRSSMB     = 50
	rpsP99Limit         = 50 * time.Millisecond
	rpsWarmup           = 500 * time.Millisecond
	latencyRound        = 25 // requests per path per round
	phaseTimeLimit      = 30 * time.Second
	startDeadline       = 20 * time.Second
)

func main() {
	bin := flag.String("bin", "", "prebuilt omni binary (default: go build ./cmd/omni into a temporary directory)")
	samples := flag.Int("samples", 3000, "requests per path for the concurrency-1 latency figures")
	streamSamples := flag.Int("stream-samples", 2000, "streams per path for the time-to-first-token figures")
	step := flag.Duration("step", 5*time.Second, "measured time per concurrency step of the rate search")
	levels := flag.String("levels", "8,16,32,64,128", "concurrency steps of the rate search")
	strict := flag.Bool("strict", false, "exit 1 when a target is missed")
	features := flag.Bool("features", false, "compare the gateway with every feature on (keys with limits and a budget, usage log, resilience, cache, idempotency) against the gateway built from -baseline")
	baseline := flag.String("baseline", "", "git revision of the gateway without the features, for -features")
	serveUpstream := flag.Bool("serve-upstream", false, "only serve the instant upstream on a loopback port and print its URL (used by the harness itself)")
	serveProxy := flag.String("serve-proxy", "", "only serve a bare reverse proxy to this URL on a loopback port and print its URL (used by the harness itself)")
	flag.Parse()
	if *serveUpstream || *serveProxy != "" {
		if err := runChild(*serveProxy); err != nil {
			fatal(err)
		}
		return
	}
	conc, err := parseLevels(*levels)
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := options{bin: *bin, samples: *samples, streamSamples: *streamSamples, step: *step, levels: conc, baseline: *baseline}
	run := run
	if *features {
		if *baseline == "" {
			fatal(errors.New("-features needs -baseline REV"))
		}
		run = runFeatures
	}
	missed, err := run(ctx, o)
	if err != nil {
		fatal(err)
	}
	if *strict && missed > 0 {
		os.Exit(1)
	}
}

type options struct {
	bin           string
	samples       int
	streamSamples int
	step          time.Duration
	levels        []int
	baseline      string
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "routebench:", err)
	os.Exit(1)
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("bad concurrency level %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, cfg options) (missed int, err error) {
	tmp, err := os.MkdirTemp("", "routebench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)

	up, err := startChild(ctx, "-serve-upstream")
	if err != nil {
		return 0, err
	}
	defer up.Stop()
	proxy, err := startChild(ctx, "-serve-proxy", up.URL)
	if err != nil {
		return 0, err
	}
	defer proxy.Stop()

	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(tmp, "omni")
		fmt.Fprintln(os.Stderr, "building omni…")
		if err := buildOmni(ctx, bin); err != nil {
			return 0, err
		}
	}
	gw, err := startGateway(ctx, bin, tmp, up.URL+"/v1")
	if err != nil {
		return 0, err
	}
	defer gw.Stop()

	c := newClient()
	defer c.CloseIdleConnections()
	direct := path{name: "direct   client → upstream (OpenAI)", url: up.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: openAIRequest(upstreamModel, false), streamBody: openAIRequest(upstreamModel, true)}
	floor := path{name: "bare reverse proxy (floor of one hop)", url: proxy.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: direct.body, streamBody: direct.streamBody}
	viaOpenAI := path{name: "gateway  OpenAI → OpenAI", url: gw.URL + "/v1/chat/completions", kind: kindOpenAI,
		body: openAIRequest(gatewayModel, false), streamBody: openAIRequest(gatewayModel, true)}
	viaAnthropic := path{name: "gateway  Anthropic → OpenAI", url: gw.URL + "/v1/messages", kind: kindAnthropic,
		body: anthropicRequest(gatewayModel, false), streamBody: anthropicRequest(gatewayModel, true)}
	paths := []path{direct, floor, viaOpenAI, viaAnthropic}
	for _, p := range paths {
		if err := p.check(c); err != nil {
			return 0, err
		}
	}
	idleRSS, _ := procStatusKB(gw.Pid(), "VmRSS")

	conns := func() int { return upstreamConnections(c, up.URL) }
	fmt.Fprintln(os.Stderr, "measuring latency at concurrency 1…")
	c0 := conns()
	lat, err := interleave(ctx, paths, cfg.samples, func(p path) (time.Duration, error) { return p.call(c) })
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(os.Stderr, "measuring time to first token…")
	c1 := conns()
	ttft, err := interleave(ctx, paths, cfg.streamSamples, func(p path) (time.Duration, error) { return p.firstToken(c) })
	if err != nil {
		return 0, err
	}
	c2 := conns()
	fmt.Fprintln(os.Stderr, "searching the highest rate…")
	var steps []rateStep
	for _, n := range cfg.levels {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		u := loadStep(ctx, c, direct, n, cfg.step)
		f := loadStep(ctx, c, floor, n, cfg.step)
		g := loadStep(ctx, c, viaOpenAI, n, cfg.step)
		steps = append(steps, rateStep{conc: n, upstream: u, floor: f, gateway: g})
		fmt.Fprintf(os.Stderr, "  c=%d upstream %.0f rps, bare proxy %.0f rps, gateway %.0f rps\n", n, u.rps, f.rps, g.rps)
		if !u.ok() && !g.ok() {
			break // both saturated: higher steps only queue more
		}
	}
	c3 := conns()
	peakRSS, _ := procStatusKB(gw.Pid(), "VmHWM")
	loadedRSS, _ := procStatusKB(gw.Pid(), "VmRSS")

	r := report{lat: lat, ttft: ttft, paths: paths, steps: steps, idleRSSKB: idleRSS, peakRSSKB: peakRSS, loadedRSSKB: loadedRSS, cfg: cfg,
		upConns: [3]int{c1 - c0, c2 - c1, c3 - c2}}
	return r.print(os.Stdout), nil
}

// ---- the instant upstream ----

// upstreamHandler answers OpenAI chat completions at once with a fixed
// answer, streamed chunk by chunk (flushed each) when asked to stream.
func upstreamHandler(accepted *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connections", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, accepted.Load())
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, `{"error":{"message":"unreadable body","type":"invalid_request_error"}}`, http.StatusBadRequest)
			return
		}
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(completionJSON)))
			_, _ = w.Write(completionJSON)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for _, c := range streamChunks {
			if _, err := w.Write(c); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
	return mux
}

// proxyHandler is the floor any HTTP proxy pays: a bare proxy that
// forwards bytes to target without looking at them, flushing each read
// of the upstream's answer at once.
func proxyHandler(target string) (http.Handler, error) {
	if _, err := url.Parse(target); err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body is read whole first, as the gateway does: streaming
		// it through would let the upstream's answer, flushed to the
		// client, close the inbound body under the outbound write.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}), nil
}

// runChild serves the instant upstream, or a bare proxy to proxyTo, on a
// loopback port, prints its URL on stdout and serves until stdin closes
// (the harness ended).
func runChild(proxyTo string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	h := upstreamHandler(&accepted)
	if proxyTo != "" {
		if h, err = proxyHandler(proxyTo); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		}}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	fmt.Printf("http://%s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startChild runs this program with args (-serve-upstream, -serve-proxy)
// in a process of its own, so every hop of the direct baseline and of the
// floor crosses a process boundary as the gateway's hops do, and the
// upstream does not share a Go scheduler with the load generator.
func startChild(ctx context.Context, args ...string) (*process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the upstream: %w", err)
	}
	p := newProcess(cmd)
	p.stdin = stdin
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			addr <- strings.TrimSpace(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	if err := p.await(ctx, addr, "routebench "+strings.Join(args, " ")); err != nil {
		return nil, err
	}
	return p, nil
}

// process is a child the harness started and stops.
type process struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{}
}

func newProcess(cmd *exec.Cmd) *process {
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

// await waits for the child to report its URL.
func (p *process) await(ctx context.Context, addr <-chan string, name string) error {
	select {
	case u := <-addr:
		p.URL = u
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before listening", name)
	case <-time.After(startDeadline):
		p.Stop()
		return fmt.Errorf("%s did not report its address", name)
	case <-ctx.Done():
		p.Stop()
		return ctx.Err()
	}
}

func (p *process) Pid() int { return p.cmd.Process.Pid }

// Stop terminates the child: SIGTERM, then SIGKILL after 5 s.
func (p *process) Stop() {
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ---- the gateway process ----

func buildOmni(ctx context.Context, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/omni")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/omni: %w", err)
	}
	return nil
}

var listenLine = regexp.MustCompile(`OmniRoute gateway listening.*\baddr=(\S+)`)

// startGateway runs `omni serve route` on a loopback port of its own
// choosing, with a generated configuration and a temporary data
// directory, and waits until /healthz answers.
func startGateway(ctx context.Context, bin, tmp, upstreamURL string) (*process, error) {
	return startGatewayWith(ctx, bin, tmp, upstreamURL, "")
}

// startGatewayWith is startGateway with more lines of the route section
// of the configuration (indented two spaces).
func startGatewayWith(ctx context.Context, bin, tmp, upstreamURL, extra string) (*process, error) {
	data := filepath.Join(tmp, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	// client-key is the gateway key the load generator sends (a key that
	// is not valid is refused, even where keys are not required).
	conf := fmt.Sprintf(`route:
  api_keys: [client-key]
  providers:
    - id: bench
      type: openai
      base_url: %s
      api_keys: [sk-bench-upstream]
      models: [%s]
%s`, upstreamURL, upstreamModel, extra)
	confPath := filepath.Join(tmp, "omni.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	args := []string{"serve", "route", "--config", confPath, "--data", data,
		"--route-listen", "127.0.0.1:0", "--log-level", "info", "--log-format", "text"}
	if hasFlag(bin, "metrics-listen") { // builds before the metrics listener have none to turn off
		args = append(args, "--metrics-listen", "off")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting omni: %w", err)
	}
	g := newProcess(cmd)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- "http://" + m[1]:
				default:
				}
				continue
			}
			if strings.Contains(line, "level=INFO") {
				continue
			}
			fmt.Fprintln(os.Stderr, "omni:", line)
		}
	}()
	if err := g.await(ctx, addr, "omni serve route"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(startDeadline)
	for {
		resp, err := http.Get(g.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("gateway at %s not healthy: %v", g.URL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hasFlag reports whether bin's serve command takes --name (the
// features comparison runs an older build beside this one).
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "serve", "route", "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ")
}

// cleanEnv drops OMNI_* settings of the caller so only the generated
// configuration applies.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OMNI_") || strings.HasPrefix(kv, "REQUIRE_API_KEY=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// procStatusKB reads a kB field (VmRSS, VmHWM) of /proc/PID/status.
func procStatusKB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// upstreamConnections asks the upstream how many connections it has
// accepted so far (-1 when it cannot tell).
func upstreamConnections(c *http.Client, upstreamURL string) int {
	resp, err := c.Get(upstreamURL + "/connections")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// ---- the client side ----

func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

type dialect int

const (
	kindOpenAI dialect = iota
	kindAnthropic
)

// path is one way to the same answer.
type path struct {
	name       string
	url        string
	kind       dialect
	body       []byte
	streamBody []byte
	key        string // gateway key sent (default "client-key")
}

func (p path) post(c *http.Client, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	key := p.key
	if key == "" {
		key = "client-key"
	}
	if p.kind == kindAnthropic {
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("x-api-key", key)
	} else {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: status %d: %s", p.url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp, nil
}

// call sends the non-streaming request and reads the whole answer.
func (p path) call(c *http.Client) (time.Duration, error) {
	start := time.Now()
	resp, err := p.post(c, p.body)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start), err
}

var (
	openAIContent = []byte(`"content":"`)
	openAIEmpty   = []byte(`"content":""`)
	anthropicText = []byte(`"text_delta"`)
)

// firstToken sends the streaming request and returns the time until the
// first event carrying content text arrived; the rest is read and
// dropped so the connection is reused.
func (p path) firstToken(c *http.Client) (time.Duration, error) {
	start := time.Now()
	resp, err := p.post(c, p.streamBody)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	var first time.Duration
	for {
		line, err := br.ReadSlice('\n')
		if first == 0 && bytes.HasPrefix(line, []byte("data:")) {
			if p.kind == kindAnthropic && bytes.Contains(line, anthropicText) ||
				p.kind == kindOpenAI && bytes.Contains(line, openAIContent) && !bytes.Contains(line, openAIEmpty) {
				first = time.Since(start)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, err
		}
	}
	if first == 0 {
		return 0, fmt.Errorf("%s: stream carried no content", p.url)
	}
	return first, nil
}

// check makes sure the path answers with the expected content, whole and
// streamed, before anything is measured.
func (p path) check(c *http.Client) error {
	resp, err := p.post(c, p.body)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("Paris is 18°C")) {
		return fmt.Errorf("%s: unexpected answer: %.300s", p.name, b)
	}
	_, err = p.firstToken(c)
	return err
}

// interleave measures each path n times in rounds of latencyRound
// requests, path after path, so slow spells of a shared machine fall on
// every path alike. It stops after phaseTimeLimit whatever the count.
func interleave(ctx context.Context, paths []path, n int, f func(path) (time.Duration, error)) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(paths))
	for i := range out {
		out[i] = make([]time.Duration, 0, n)
	}
	// Warm every connection and code path first.
	for range 50 {
		for _, p := range paths {
			if _, err := f(p); err != nil {
				return nil, err
			}
		}
	}
	deadline := time.Now().Add(phaseTimeLimit)
	for len(out[0]) < n && time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i, p := range paths {
			for j := 0; j < latencyRound && len(out[i]) < n; j++ {
				d, err := f(p)
				if err != nil {
					return nil, err
				}
				out[i] = append(out[i], d)
			}
		}
	}
	return out, nil
}

// stepResult is one concurrency step of the rate search.
type stepResult struct {
	rps      float64
	p50, p99 time.Duration
	n, errs  int
	firstErr error
}

func (s stepResult) ok() bool { return s.errs == 0 && s.n > 0 && s.p99 < rpsP99Limit }

type rateStep struct {
	conc                     int
	upstream, floor, gateway stepResult
}

// loadStep runs n closed-loop workers against p for rpsWarmup (not
// counted) and then d.
func loadStep(ctx context.Context, c *http.Client, p path, n int, d time.Duration) stepResult {
	start := time.Now()
	measureFrom := start.Add(rpsWarmup)
	end := measureFrom.Add(d)
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			var e int
			var fe error
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				dur, err := p.call(c)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					e++
					if fe == nil {
						fe = err
					}
					continue
				}
				lat = append(lat, dur)
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			if firstErr == nil {
				firstErr = fe
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	s := stepResult{n: len(all), errs: errs, firstErr: firstErr}
	if elapsed > 0 {
		s.rps = float64(len(all)) / elapsed.Seconds()
	}
	s.p50, s.p99 = quantile(all, 0.50), quantile(all, 0.99)
	return s
}

// quantile sorts d in place and returns its q-quantile (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(float64(len(d))*q+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// ---- the report ----

type report struct {
	lat, ttft                         [][]time.Duration
	paths                             []path
	steps                             []rateStep
	idleRSSKB, peakRSSKB, loadedRSSKB int
	cfg                               options
	upConns                           [3]int // connections the upstream accepted per phase
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func added(d time.Duration) string {
	return fmt.Sprintf("%+.3f", float64(d)/float64(time.Millisecond))
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func verdict(ok bool, missed *int) string {
	if ok {
		return "MET"
	}
	*missed++
	return "MISSED"
}

// print writes the tables and returns how many targets were missed.
func (r report) print(w io.Writer) int {
	missed := 0
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\nOmniRoute gateway overhead — instant upstream on loopback, %s, %d CPUs, %s, %s\n",
		host, runtime.NumCPU(), runtime.Version(), time.Now().Format(time.RFC3339))
	fmt.Fprintln(w, "(the load generator and the upstream share the machine with the gateway; figures are for comparison within one run)")

	table := func(title string, data [][]time.Duration, targets []time.Duration) {
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintf(w, "%-38s %8s %8s %8s %10s %10s %8s %8s  %s\n", "path", "n", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "x p50", "x p99", "target (added p99)")
		base := data[0]
		b50, b99 := quantile(base, 0.50), quantile(base, 0.99)
		for i, p := range r.paths {
			p50, p99 := quantile(data[i], 0.50), quantile(data[i], 0.99)
			if i == 0 {
				fmt.Fprintf(w, "%-38s %8d %8s %8s %10s %10s %8s %8s  %s\n", p.name, len(data[i]), ms(p50), ms(p99), "", "", "1.00x", "1.00x", "baseline")
				continue
			}
			t := targets[i]
			if t < 0 {
				fmt.Fprintf(w, "%-38s %8d %8s %8s %10s %10s %8s %8s  %s\n", p.name, len(data[i]), ms(p50), ms(p99),
					added(p50-b50), added(p99-b99), ratio(p50, b50), ratio(p99, b99), "reference")
				continue
			}
			fmt.Fprintf(w, "%-38s %8d %8s %8s %10s %10s %8s %8s  ≤ %s ms %s\n", p.name, len(data[i]), ms(p50), ms(p99),
				added(p50-b50), added(p99-b99), ratio(p50, b50), ratio(p99, b99), ms(t), verdict(p99-b99 <= t, &missed))
		}
	}
	table("Latency at concurrency 1, non-streaming (whole answer read)", r.lat,
		[]time.Duration{0, -1, targetAddedP99, targetAddedP99Trans})
	table("Streaming: time to first content token", r.ttft,
		[]time.Duration{0, -1, targetAddedTTFT, targetAddedTTFT})

	fmt.Fprintf(w, "\nRate search, non-streaming OpenAI → OpenAI: %s measured per step after %s warm-up; a step counts when p99 < %s with no errors\n",
		r.cfg.step, rpsWarmup, rpsP99Limit)
	fmt.Fprintf(w, "%6s | %-27s | %-27s | %-27s | %s\n", "", "upstream alone", "bare reverse proxy", "gateway", "gateway/upstream")
	fmt.Fprintf(w, "%6s | %8s %9s %8s | %8s %9s %8s | %8s %9s %8s | %s\n", "conc", "req/s", "p99 ms", "errors", "req/s", "p99 ms", "errors", "req/s", "p99 ms", "errors", "req/s")
	var best [3]stepResult
	var bestC [3]int
	for _, s := range r.steps {
		cell := func(x stepResult) string {
			mark := " "
			if !x.ok() {
				mark = "*"
			}
			return fmt.Sprintf("%8.0f %8s%s %8d", x.rps, ms(x.p99), mark, x.errs)
		}
		fmt.Fprintf(w, "%6d | %s | %s | %s | %.2fx\n", s.conc, cell(s.upstream), cell(s.floor), cell(s.gateway), s.gateway.rps/max(s.upstream.rps, 1))
		for i, x := range []stepResult{s.upstream, s.floor, s.gateway} {
			if x.ok() && x.rps > best[i].rps {
				best[i], bestC[i] = x, s.conc
			}
			if x.firstErr != nil {
				fmt.Fprintf(w, "         first error at c=%d: %v\n", s.conc, x.firstErr)
			}
		}
	}
	fmt.Fprintln(w, "       (* p99 over the limit or errors: the step does not count)")
	at := func(i int) string {
		if bestC[i] == 0 {
			return "0 (no step met the limit)"
		}
		return fmt.Sprintf("%.0f (c=%d)", best[i].rps, bestC[i])
	}
	bestUp, bestFloor, bestGw := best[0], best[1], best[2]
	fmt.Fprintf(w, "max RPS: gateway %s, target ≥ %d %s; bare proxy %s; upstream alone %s; gateway/upstream %.2f, gateway/bare proxy %.2f\n",
		at(2), targetRPS, verdict(bestGw.rps >= targetRPS, &missed), at(1), at(0),
		bestGw.rps/max(bestUp.rps, 1), bestGw.rps/max(bestFloor.rps, 1))

	fmt.Fprintf(w, "\nGateway RSS: idle %.1f MB (target ≤ %d MB %s), after load %.1f MB, peak (VmHWM) %.1f MB\n",
		float64(r.idleRSSKB)/1024, targetIdleRSSMB, verdict(r.idleRSSKB > 0 && r.idleRSSKB <= targetIdleRSSMB*1024, &missed),
		float64(r.loadedRSSKB)/1024, float64(r.peakRSSKB)/1024)
	fmt.Fprintf(w, "Upstream connections opened (direct and gateway together; keep-alive means a handful): latency %d, streaming %d, rate search %d\n",
		r.upConns[0], r.upConns[1], r.upConns[2])
	if missed == 0 {
		fmt.Fprintln(w, "\nall targets met")
	} else {
		fmt.Fprintf(w, "\n%d target(s) missed\n", missed)
	}
	return missed
}
