// Package mcp is the gateway's Model Context Protocol server: the tools
// an MCP client (Claude Desktop, Claude Code, an agent) calls to work with
// the gateway — list its models, chat through its router as a gateway
// key, read usage and cost, provider health, budgets and the (masked)
// key list — each doing its work from the gateway's own state; the two
// HTTP transports under /api/mcp (SSE and streamable HTTP, gated per
// request by the stored settings mcp_enabled and mcp_transport, capped in
// sessions, message size and idle time); the audit log of every tool
// call (table gateway_mcp_audit, arguments masked and size-capped,
// bounded retention) with its status, tool list and audit reads; and
// Proxy, the stdio transport `omni route mcp` runs, which relays a local
// MCP client to a gateway's HTTP transport. It is built on the official
// Go SDK (github.com/modelcontextprotocol/go-sdk).
package mcp

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/store"
)

// The stored settings the transports read on every request.
const (
	SettingEnabled   = "mcp_enabled"   // "true" serves the HTTP transports; default off
	SettingTransport = "mcp_transport" // "sse" or "streamable-http" (the default)
)

// The transports.
const (
	TransportSSE        = "sse"
	TransportStreamable = "streamable-http"
	TransportStdio      = "stdio"
)

// The default caps.
const (
	DefaultMaxSessions = 64
	DefaultMaxMessage  = 1 << 20
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultRetention is how long audit rows are kept; at most
	// DefaultMaxAuditRows rows are kept whatever their age.
	DefaultRetention    = 30 * 24 * time.Hour
	DefaultMaxAuditRows = 100_000
)

// Settings is where the transports read whether MCP is on and which
// transport is configured (the route store's settings table).
type Settings interface {
	Setting(ctx context.Context, key string) (value string, ok bool, err error)
}

// Caller is who opened an MCP session: the dashboard login ("session"),
// a management API key ("key", with its id and scopes) or a gateway
// whose login is off ("open").
type Caller struct {
	Kind   string
	KeyID  string
	Name   string
	Scopes []string
}

// may reports whether the caller holds scope: a key holds the scopes it
// was given, the dashboard login every scope.
func (c Caller) may(scope string) bool {
	return c.Kind != "key" || slices.Contains(c.Scopes, scope)
}

// The scopes a tool may need.
const (
	ScopeMCP    = "mcp"    // every tool
	ScopeManage = "manage" // gateway-wide reads (every key's usage, budgets, the key list)
)

// Sources are the gateway state the tools read and act on. Each is a
// small function the gateway's assembly supplies; a nil one makes its
// tool answer that the gateway does not serve it.
type Sources struct {
	// Models lists the routing state's models.
	Models func() []Model
	// Dispatch serves the chat tool's request through the gateway's own
	// endpoint as a gateway key (key policy, limits, budgets, usage,
	// fallback all apply).
	Dispatch feature.Dispatcher
	// KeyLive reports whether id names a live gateway key.
	KeyLive func(id string) bool
	// Usage sums the usage records since the time, of one key or ("")
	// all of them.
	Usage func(ctx context.Context, since time.Time, keyID string) (any, error)
	// Health is the providers' breakers, cooldowns and lockouts.
	Health func(ctx context.Context) (any, error)
	// Budgets are the budget states of one key or ("") every key with a
	// budget.
	Budgets func(ctx context.Context, keyID string) (any, error)
	// Keys lists the gateway keys (never their secrets).
	Keys func(ctx context.Context) ([]Key, error)
}

// Model is one model of the routing state.
type Model struct {
	ID      string `json:"id"`
	OwnedBy string `json:"ownedBy"`
	Kind    string `json:"kind"`
}

// Key is a gateway key as the key-list tool shows it: no hash, and only
// the display prefix of the raw value.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Masked     string     `json:"key"` // the display prefix followed by "…"
	Kind       string     `json:"kind"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	Revoked    bool       `json:"revoked"`
}

// Options configure the server.
type Options struct {
	Settings Settings
	DB       *sqldb.DB // the audit log's table (Migrations)
	Sources  Sources
	// Caller says who made an authenticated transport request; nil: the
	// dashboard login (every management route is behind it).
	Caller func(r *http.Request) Caller
	// Caps; zero takes the default.
	MaxSessions  int
	MaxMessage   int64
	IdleTimeout  time.Duration
	Retention    time.Duration
	MaxAuditRows int
	Version      string
	Clock        clock.Clock
	Log          *slog.Logger
}

// Server is the gateway's MCP server.
type Server struct {
	opt    Options
	audit  *auditLog
	schema *sdk.SchemaCache
	sse    http.Handler
	stream http.Handler

	mu       sync.Mutex
	streams  map[*sseStream]struct{}         // open SSE streams (a slot each, initialized or not)
	sessions map[*sdk.ServerSession]*session // initialized sessions of both transports
	owners   map[string]string               // session id → who opened it (Caller.identity)
}

type session struct {
	transport string
	last      time.Time
}

// sseStream is one open SSE GET: it holds a session slot from the moment
// it opens, so one that never initializes is closed after the idle
// timeout like a session that went quiet.
type sseStream struct {
	opened      time.Time
	cancel      context.CancelFunc
	initialized bool // guarded by Server.mu
}

type streamKey struct{}

// identity names a caller for the binding of sessions to who opened
// them: the dashboard login, a gateway whose login is off, or one key.
func (c Caller) identity() string { return c.Kind + ":" + c.KeyID }

// New returns the MCP server.
func New(opt Options) *Server {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Caller == nil {
		opt.Caller = func(*http.Request) Caller { return Caller{Kind: "session"} }
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opt.MaxSessions, DefaultMaxSessions)
	def(&opt.MaxAuditRows, DefaultMaxAuditRows)
	if opt.MaxMessage <= 0 {
		opt.MaxMessage = DefaultMaxMessage
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = DefaultIdleTimeout
	}
	if opt.Retention <= 0 {
		opt.Retention = DefaultRetention
	}
	if opt.Version == "" {
		opt.Version = "dev"
	}
	s := &Server{opt: opt, audit: &auditLog{db: opt.DB}, schema: sdk.NewSchemaCache(),
		sessions: map[*sdk.ServerSession]*session{}, owners: map[string]string{},
		streams: map[*sseStream]struct{}{}}
	s.sse = sdk.NewSSEHandler(func(r *http.Request) *sdk.Server {
		st, _ := r.Context().Value(streamKey{}).(*sseStream)
		return s.newServer(TransportSSE, opt.Caller(r), st)
	}, &sdk.SSEOptions{MaxRequestBodyBytes: opt.MaxMessage, DisableLocalhostProtection: true})
	s.stream = sdk.NewStreamableHTTPHandler(func(r *http.Request) *sdk.Server {
		return s.newServer(TransportStreamable, opt.Caller(r), nil)
	}, &sdk.StreamableHTTPOptions{MaxRequestBodyBytes: opt.MaxMessage, SessionTimeout: opt.IdleTimeout,
		DisableLocalhostProtection: true, Logger: opt.Log})
	return s
}

// Module is the MCP server as a gateway feature: its management routes,
// its audit table and the loop that closes idle sessions and prunes the
// audit log.
func (s *Server) Module() feature.Module {
	return feature.Module{
		Name:       "mcp",
		Package:    "route/mcp",
		Admin:      func(a feature.Admin) { s.Register(a.Guarded, a.Scoped(store.ScopeMCP)) },
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Settings:   feature.Settings{Stored: []string{SettingEnabled, SettingTransport}},
		Run:        s.Run,
		Lifetime:   feature.Detached,
	}
}

// Run closes idle sessions and prunes the audit log until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	prune := time.Time{}
	for {
		now := s.opt.Clock.Now()
		s.closeIdle(now)
		if now.Sub(prune) >= time.Hour {
			prune = now
			if err := s.audit.prune(ctx, now.Add(-s.opt.Retention), s.opt.MaxAuditRows); err != nil && ctx.Err() == nil {
				s.opt.Log.Warn("mcp: audit prune", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// sessionVersions are the protocol versions of the SDK that have
// sessions (initialize, then "initialized"): those before 2026-07-28.
var sessionVersions = slices.DeleteFunc(sdk.SupportedProtocolVersions(), func(v string) bool { return v >= "2026-07-28" })

// newServer is the SDK server of one session, its tools bound to the
// caller that opened it (and, over SSE, to its stream).
func (s *Server) newServer(transport string, c Caller, st *sseStream) *sdk.Server {
	srv := sdk.NewServer(&sdk.Implementation{Name: "omniroute", Title: "OmniRoute", Version: s.opt.Version}, &sdk.ServerOptions{
		Instructions: "Tools of an OmniRoute AI gateway: its models, chat through its router, usage, provider health, budgets, keys.",
		SchemaCache:  s.schema,
		// Sessions only: a client of the sessionless protocol (SEP-2575,
		// 2026-07-28) would never send "initialized", so its session would
		// escape the cap and the idle timeout, and a stream of it would be
		// closed as never initialized. The SDK answers its server/discover
		// with the versions below, and the client falls back to initialize
		// (whichever of the SDK's goroutines runs first).
		SupportedProtocolVersions: sessionVersions,
		Capabilities:              &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		InitializedHandler: func(_ context.Context, req *sdk.InitializedRequest) {
			s.track(req.Session, transport, c, st)
		},
	})
	srv.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if ss, ok := req.GetSession().(*sdk.ServerSession); ok {
				s.touch(ss)
			}
			return next(ctx, method, req)
		}
	})
	s.addTools(srv, transport, c)
	return srv
}

// track counts an initialized session until it ends, and binds a
// streamable session's id to its caller.
func (s *Server) track(ss *sdk.ServerSession, transport string, c Caller, st *sseStream) {
	id := ss.ID()
	s.mu.Lock()
	if st != nil {
		st.initialized = true
	}
	if _, ok := s.sessions[ss]; ok {
		s.mu.Unlock()
		return
	}
	s.sessions[ss] = &session{transport: transport, last: s.opt.Clock.Now()}
	if id != "" {
		s.owners[id] = c.identity()
	}
	s.mu.Unlock()
	go func() {
		_ = ss.Wait()
		s.mu.Lock()
		delete(s.sessions, ss)
		if id != "" {
			delete(s.owners, id)
		}
		s.mu.Unlock()
	}()
}

// bind records who opened the session id (an SSE session, whose id the
// stream announces).
func (s *Server) bind(id string, c Caller) {
	s.mu.Lock()
	s.owners[id] = c.identity()
	s.mu.Unlock()
}

func (s *Server) unbind(id string) {
	s.mu.Lock()
	delete(s.owners, id)
	s.mu.Unlock()
}

// ownedByOther reports a session id opened by another caller.
func (s *Server) ownedByOther(id string, c Caller) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner, ok := s.owners[id]
	return ok && owner != c.identity()
}

func (s *Server) touch(ss *sdk.ServerSession) {
	s.mu.Lock()
	if e, ok := s.sessions[ss]; ok {
		e.last = s.opt.Clock.Now()
	}
	s.mu.Unlock()
}

// closeIdle closes the sessions that received nothing for the idle
// timeout, and the SSE streams that opened that long ago and never
// initialized a session.
func (s *Server) closeIdle(now time.Time) {
	var idle []*sdk.ServerSession
	var stale []context.CancelFunc
	s.mu.Lock()
	for ss, e := range s.sessions {
		if now.Sub(e.last) > s.opt.IdleTimeout {
			idle = append(idle, ss)
		}
	}
	for st := range s.streams {
		if !st.initialized && now.Sub(st.opened) > s.opt.IdleTimeout {
			stale = append(stale, st.cancel)
		}
	}
	s.mu.Unlock()
	for _, ss := range idle {
		_ = ss.Close()
	}
	for _, cancel := range stale {
		cancel()
	}
}

// openStream counts an SSE GET as a slot until the returned func runs.
func (s *Server) openStream(r *http.Request) (*http.Request, func()) {
	ctx, cancel := context.WithCancel(r.Context())
	st := &sseStream{opened: s.opt.Clock.Now(), cancel: cancel}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	return r.WithContext(context.WithValue(ctx, streamKey{}, st)), func() {
		cancel()
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}
}

// liveSessions counts the sessions that hold a slot: every open SSE
// stream and every initialized streamable session.
func (s *Server) liveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.streams)
	for _, e := range s.sessions {
		if e.transport == TransportStreamable {
			n++
		}
	}
	return n
}
