// Package browser owns how tests drive a real browser: one headless
// Debian chromium per test (through chromedp), tabs with a fixed viewport
// that record console errors, uncaught exceptions and failed requests and
// fail the test on any, step helpers with their own timeouts, full-page
// screenshots saved where a person can look at them, and a layout check
// for elements wider than the viewport. Without chromium the test is
// skipped, or fails when OMNI_TEST_STRICT=1.
package browser

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/omniedge/omni/internal/platform/testenv"
)

// ExecPath is the browser the harness starts: Debian's chromium
// ($OMNI_CHROMIUM overrides it).
func ExecPath() string {
	if v := os.Getenv("OMNI_CHROMIUM"); v != "" {
		return v
	}
	return "/usr/bin/chromium"
}

// DefaultTimeout bounds each step of a Page (a navigation, a click, a
// wait) unless Page.Timeout is changed.
const DefaultTimeout = 15 * time.Second

// Browser is one running headless chromium, closed when the test ends.
type Browser struct {
	ctx context.Context // a chromedp context that has run once
}

// New starts a headless chromium for t (sandbox off, as tests run as
// root) and closes it at t.Cleanup. A missing chromium skips t, or fails
// it in strict mode. -short skips browser tests (they take seconds),
// except in strict mode.
func New(t testing.TB) *Browser {
	t.Helper()
	if testing.Short() && !testenv.Strict() {
		t.Skip("browser tests are not short")
	}
	exe := ExecPath()
	if _, err := os.Stat(exe); err != nil {
		testenv.Unavailable(t, "chromium unavailable at %s: %v (apt-get install chromium fonts-dejavu-core)", exe, err)
		return nil
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(func() { cancel(); acancel() })
	// The first Run starts the browser; it must not carry a timeout (that
	// would stop the whole browser), so the start is bounded from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browser: start %s: %v", exe, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("browser: %s did not start in 60s", exe)
	}
	return &Browser{ctx: ctx}
}

// Problem is something a page did that fails a test: a console error, an
// uncaught exception, a failed request or an unexpected HTTP error status.
type Problem struct {
	Kind string // "console", "exception", "log", "request", "status"
	Text string
}

func (p Problem) String() string { return p.Kind + ": " + p.Text }

type allow struct {
	status int
	path   string
}

// Page is one tab with its own cookies and storage (a fresh browser
// context), a fixed viewport, and a record of the problems seen on it.
type Page struct {
	t   testing.TB
	ctx context.Context
	// Timeout bounds each step; DefaultTimeout unless changed.
	Timeout time.Duration
	Width   int
	Height  int

	mu       sync.Mutex
	problems []Problem
	allowed  []allow
	urls     map[network.RequestID]string
}

// Page opens a tab of width×height CSS pixels. The test fails at cleanup
// when the page logged a console error, threw an uncaught exception, lost
// a request, or got an HTTP status ≥ 400 that AllowStatus did not expect.
func (b *Browser) Page(t testing.TB, width, height int) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	p := &Page{t: t, ctx: ctx, Timeout: DefaultTimeout, Width: width, Height: height, urls: map[network.RequestID]string{}}
	t.Cleanup(func() {
		// A round trip flushes the events the browser sent before it.
		_, _ = p.run(chromedp.Evaluate[chromedp.Void]("0"))
		for _, pr := range p.TakeProblems() {
			t.Errorf("browser page: %s", pr)
		}
		cancel()
	})
	if err := p.runInit(chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })); err != nil {
		t.Fatalf("browser: open tab: %v", err)
	}
	if err := chromedp.Listen(ctx, p.onEvent); err != nil {
		t.Fatalf("browser: listen: %v", err)
	}
	if err := p.do(chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("browser: viewport %dx%d: %v", width, height, err)
	}
	return p
}

// runInit runs the tab's first action, which creates the tab; like a
// browser's first Run it must not carry a timeout.
func (p *Page) runInit(a chromedp.Action[chromedp.Void]) error {
	done := make(chan error, 1)
	go func() { _, err := chromedp.Run(p.ctx, a); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(p.Timeout):
		return fmt.Errorf("no tab after %v", p.Timeout)
	}
}

// AllowStatus declares that a response with status to a path starting
// with pathPrefix is expected (a 401 from "/api/auth/me" before login) and
// is not a problem.
func (p *Page) AllowStatus(status int, pathPrefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.allowed = append(p.allowed, allow{status, pathPrefix})
}

// Problems returns what went wrong on the page so far.
func (p *Page) Problems() []Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Problem(nil), p.problems...)
}

// TakeProblems returns what went wrong so far and forgets it, so a test
// that provokes an error on purpose can check it and still pass.
func (p *Page) TakeProblems() []Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.problems
	p.problems = nil
	return out
}

func (p *Page) add(kind, format string, args ...any) {
	p.problems = append(p.problems, Problem{Kind: kind, Text: fmt.Sprintf(format, args...)})
}

// onEvent runs inside chromedp's read loop: it must be quick and never
// call back into the browser.
func (p *Page) onEvent(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			desc, _, _ := strings.Cut(d.Exception.Description, "\n")
			text += " " + desc
		}
		p.add("exception", "%s (%s:%d)", text, d.URL, d.LineNumber+1)
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range e.Args {
			switch {
			case a.Description != "":
				parts = append(parts, a.Description)
			case len(a.Value) > 0:
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			default:
				parts = append(parts, string(a.Type))
			}
		}
		p.add("console", "%s", strings.Join(parts, " "))
	case *log.EventEntryAdded:
		// Network errors are judged from the responses below (where an
		// expected status can be allowed); everything else the browser
		// logs as an error (a CSP violation, a blocked script) counts.
		en := e.Entry
		if en.Level == log.EntryLevelError && en.Source != log.EntrySourceNetwork {
			p.add("log", "%s: %s %s", en.Source, en.Text, en.URL)
		}
	case *network.EventRequestWillBeSent:
		if e.Request != nil {
			p.urls[e.RequestID] = e.Request.URL
		}
	case *network.EventResponseReceived:
		r := e.Response
		if r == nil || r.Status < 400 || p.allowedLocked(int(r.Status), r.URL) {
			return
		}
		p.add("status", "%d %s", r.Status, r.URL)
	case *network.EventLoadingFailed:
		// A request the page or a navigation cancelled (an event stream
		// closed on leaving the page) is not a failure.
		if e.Canceled || e.ErrorText == "net::ERR_ABORTED" {
			return
		}
		p.add("request", "%s %s %s", e.ErrorText, e.BlockedReason, p.urls[e.RequestID])
	}
}

func (p *Page) allowedLocked(status int, raw string) bool {
	path := raw
	if u, err := url.Parse(raw); err == nil {
		path = u.Path
	}
	for _, a := range p.allowed {
		if a.status == status && strings.HasPrefix(path, a.path) {
			return true
		}
	}
	return false
}

// Context is the tab's chromedp context, for actions the helpers lack;
// derive timeouts from it (the tab has already run).
func (p *Page) Context() context.Context { return p.ctx }

func (p *Page) run(a chromedp.Action[chromedp.Void]) (chromedp.Void, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.Timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

func (p *Page) do(steps ...chromedp.Action[chromedp.Void]) error {
	_, err := p.run(chromedp.Steps(steps...))
	return err
}

// Run runs one chromedp action with the page's step timeout and returns
// its value.
func Run[T any](p *Page, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.Timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

func (p *Page) must(what string, err error) {
	p.t.Helper()
	if err != nil {
		p.t.Fatalf("browser: %s: %v", what, err)
	}
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	p.must("navigate "+url, p.do(chromedp.Navigate(url)))
}

// Click waits until the element matching the CSS selector is visible and
// clicks it.
func (p *Page) Click(sel string) {
	p.t.Helper()
	var err error
	// A page that re-renders (a polled list) can replace the node between
	// the query and the click: the click is retried on the new node.
	for range 5 {
		if err = p.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err == nil || !staleNode(err) {
			break
		}
	}
	p.must("click "+sel, err)
}

// staleNode reports an error of a node that left the document.
func staleNode(err error) bool {
	m := err.Error()
	return strings.Contains(m, "node with given id") || strings.Contains(m, "Node is detached") || strings.Contains(m, "No node with given id")
}

// SetValue sets an input's value directly and fires input and change
// events, as typing would.
func (p *Page) SetValue(sel, value string) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) throw new Error("no element " + %[1]s);
el.value = %s; el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`,
		jsString(sel), jsString(value))
	p.must("set value of "+sel, p.do(chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Evaluate[chromedp.Void](js)))
}

// Type focuses the element and types text into it key by key.
func (p *Page) Type(sel, text string) {
	p.t.Helper()
	p.must("type into "+sel, p.do(chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)))
}

// WaitVisible waits until an element matching the CSS selector is visible.
func (p *Page) WaitVisible(sel string) {
	p.t.Helper()
	p.must("wait visible "+sel, p.do(chromedp.WaitVisible(chromedp.CSS(sel))))
}

// WaitGone waits until no element matches the CSS selector.
func (p *Page) WaitGone(sel string) {
	p.t.Helper()
	p.must("wait gone "+sel, p.do(chromedp.WaitNotPresent(chromedp.CSS(sel))))
}

// WaitText waits until the first element matching the CSS selector
// contains substr in its visible text, and returns that text.
func (p *Page) WaitText(sel, substr string) string {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el ? el.innerText : null; })()`, jsString(sel))
	deadline := time.Now().Add(p.Timeout)
	last := "(no element)"
	for {
		v, err := Run(p, chromedp.Evaluate[*string](js))
		if err != nil {
			p.t.Fatalf("browser: wait text %q in %s: %v", substr, sel, err)
		}
		if v != nil {
			last = *v
			if strings.Contains(last, substr) {
				return last
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("browser: %s never contained %q in %v; last text %q", sel, substr, p.Timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Text returns the visible text of the first element matching the CSS
// selector (waiting for it to exist).
func (p *Page) Text(sel string) string {
	p.t.Helper()
	v, err := Run(p, chromedp.Text(chromedp.CSS(sel)))
	p.must("text of "+sel, err)
	return v
}

// Eval evaluates a JavaScript expression (a promise is awaited) and
// decodes its JSON value into T.
func Eval[T any](p *Page, js string) T {
	p.t.Helper()
	v, err := Run(p, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	p.must("eval "+js, err)
	return v
}

// Eval evaluates a JavaScript expression (a promise is awaited) and
// returns its JSON value decoded into any (nil for undefined or null).
func (p *Page) Eval(js string) any {
	p.t.Helper()
	v, err := Run(p, chromedp.Evaluate[any](js, chromedp.EvalAwaitPromise))
	if errors.Is(err, chromedp.ErrJSUndefined) || errors.Is(err, chromedp.ErrJSNull) {
		return nil
	}
	p.must("eval "+js, err)
	return v
}

// ColorScheme emulates prefers-color-scheme ("light" or "dark"; "" ends
// the emulation).
func (p *Page) ColorScheme(scheme string) {
	p.t.Helper()
	params := emulation.SetEmulatedMediaParams{}
	if scheme != "" {
		params.Features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	p.must("color scheme "+scheme, p.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, params)
		return err
	})))
}

// ScreenshotDir is where screenshots go: $OMNI_SCREENSHOT_DIR, or
// omni-screenshots under the system's temporary directory (kept after the
// test so a person can look at them).
func ScreenshotDir() string {
	if v := os.Getenv("OMNI_SCREENSHOT_DIR"); v != "" {
		return v
	}
	return filepath.Join(os.TempDir(), "omni-screenshots")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a full-page PNG named after the test, name and
// viewport width, logs its path and returns it.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	// From the top, so sticky bars sit where a visitor first sees them.
	_, _ = Run(p, chromedp.Evaluate[chromedp.Void]("window.scrollTo(0, 0)"))
	png, err := Run(p, chromedp.FullScreenshot(100))
	p.must("screenshot "+name, err)
	dir := ScreenshotDir()
	p.must("screenshot dir", os.MkdirAll(dir, 0o755))
	file := filepath.Join(dir, unsafeName.ReplaceAllString(fmt.Sprintf("%s-%s-%d", p.t.Name(), name, p.Width), "_")+".png")
	p.must("write screenshot", os.WriteFile(file, png, 0o644))
	p.t.Logf("screenshot %s", file)
	return file
}

// overflowJS lists what sticks out of the viewport to the right: the
// document itself when it scrolls sideways, and every visible element
// whose right edge passes the viewport's, unless an ancestor clips or
// scrolls it sideways (a wide table inside its own scroll box is fine)
// or its parent is already listed.
const overflowJS = `(() => {
  const de = document.documentElement, vw = de.clientWidth, out = [];
  if (de.scrollWidth > vw + 1) out.push("document: scrollWidth " + de.scrollWidth + " > " + vw);
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const clipped = el => {
    for (let a = el.parentElement; a && a !== document.body && a !== de; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox !== "visible") return true;
    }
    return false;
  };
  const bad = new Set();
  for (const el of document.body ? document.body.querySelectorAll("*") : []) {
    const cs = getComputedStyle(el);
    if (cs.display === "none" || cs.visibility === "hidden") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= vw + 1 || r.left >= vw) continue;
    if (clipped(el)) continue;
    bad.add(el);
    if (bad.has(el.parentElement)) continue;
    out.push(name(el) + ": right edge " + Math.round(r.right) + " > " + vw);
  }
  return out;
})()`

// Overflow returns what is wider than the viewport (empty when the
// layout fits).
func (p *Page) Overflow() []string {
	p.t.Helper()
	return Eval[[]string](p, overflowJS)
}

// CheckLayout fails t when anything is wider than the viewport.
func (p *Page) CheckLayout(t testing.TB) {
	t.Helper()
	if o := p.Overflow(); len(o) > 0 {
		t.Errorf("layout at %dpx: wider than the viewport:\n  %s", p.Width, strings.Join(o, "\n  "))
	}
}

func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
