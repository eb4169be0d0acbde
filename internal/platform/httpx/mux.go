package httpx

import (
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
)

// Route is one pattern registered on a Mux: the method ("" for any),
// the path pattern, who may call it and the package that registered it.
type Route struct {
	Method, Path string
	Auth         string // as given to NewMux or WithAuth; "" when unknown
	Owner        string // import path of the registering package
}

// Mux is an http.ServeMux that remembers what was registered on it, so a
// product can list the endpoints it serves (and a test can hold the
// documented list to it). Serving is the ServeMux's own.
type Mux struct {
	mux       *http.ServeMux
	auth      string // for handlers without WithAuth
	assembler string // package that made the Mux

	mu     sync.Mutex
	routes []Route
}

// NewMux returns an empty Mux whose routes are called with auth unless
// their handler says otherwise (WithAuth).
func NewMux(auth string) *Mux {
	m := &Mux{mux: http.NewServeMux(), auth: auth}
	if pc, _, _, ok := runtime.Caller(1); ok {
		m.assembler = funcPackage(runtime.FuncForPC(pc).Name())
	}
	return m
}

// Handle registers h for pattern as http.ServeMux.Handle does (and
// panics as it does on a conflicting pattern). A handler that lists
// routes of its own (a mounted server with a Routes method) stands for
// those routes instead of pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	auth := m.auth
	if a, ok := h.(authed); ok {
		h, auth = a.Handler, a.auth
	}
	m.mux.Handle(pattern, h)
	var add []Route
	if sub, ok := h.(interface{ Routes() []Route }); ok {
		add = sub.Routes()
	} else {
		method, path := splitPattern(pattern)
		add = []Route{{Method: method, Path: path, Auth: auth, Owner: m.owner()}}
	}
	m.mu.Lock()
	m.routes = append(m.routes, add...)
	m.mu.Unlock()
}

// HandleFunc registers f for pattern.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// ServeHTTP implements http.Handler.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Routes returns the registered routes in registration order.
func (m *Mux) Routes() []Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Route(nil), m.routes...)
}

// owner is the package that asked for the registration: walking out from
// the call, the last package before the one that made the Mux. Function
// literals are passed over: a registration helper another package hands
// out (a guard) is one, and its name says where it was inlined, not whose
// it is.
func (m *Mux) owner() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	here, _, _, _ := runtime.Caller(0)
	self := funcPackage(runtime.FuncForPC(here).Name())
	first, prev := "", ""
	for {
		f, more := frames.Next()
		pkg := funcPackage(f.Function)
		if pkg != self && pkg != "" && !closure.MatchString(f.Function) {
			if first == "" {
				first = pkg
			}
			if pkg == m.assembler {
				if prev == "" {
					return pkg
				}
				return prev
			}
			prev = pkg
		}
		if !more {
			break
		}
	}
	return first
}

// closure matches the name of a function literal: "F.func1", nested
// "F.func1.2", or one of an inlined function, "G.F.func1", or of a
// function inlined into a function literal, "G.func1.F.1" (a named
// function's name is never a number).
var closure = regexp.MustCompile(`\.(func)?\d+$`)

// funcPackage is the import path in a function name such as
// "example.com/a/b.(*T).M.func1".
func funcPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	if dot := strings.IndexByte(fn[slash+1:], '.'); dot >= 0 {
		return fn[:slash+1+dot]
	}
	return fn
}

// splitPattern splits "[METHOD ][HOST]/PATH" into method and host+path.
func splitPattern(p string) (method, path string) {
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		method, p = p[:i], strings.TrimLeft(p[i:], " \t")
	}
	return method, p
}

// authed is a handler labelled with who may call it.
type authed struct {
	http.Handler
	auth string
}

// WithAuth labels h with who may call it, for the Mux's route list; a
// Mux registers h itself, so the label costs nothing per request.
func WithAuth(auth string, h http.Handler) http.Handler { return authed{h, auth} }
