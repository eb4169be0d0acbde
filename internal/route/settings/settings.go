// Package settings owns the gateway's general settings document
// (/api/settings: the login requirement and the MCP and A2A switches,
// with links to the settings that have documents of their own), the IP
// filter (/api/settings/ip-filter) and the screen that applies it to
// every request on the gateway's listener, kept in memory and reloaded
// from the route store so that a change through one replica holds on
// every replica within a second, and the process endpoints: the first-run
// check (/api/init), diagnostics (/api/system-info) and the graceful
// restart and shutdown (/api/restart, /api/shutdown) through hooks the
// process gives.
package settings

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/store"
)

// Stored setting keys of the general document (the route store's
// settings table); the MCP and A2A servers read them per request.
const (
	KeyMCPEnabled   = "mcp_enabled"   // "true" or "false"; unset means false
	KeyMCPTransport = "mcp_transport" // "sse" or "streamable-http"; unset means streamable-http
	KeyA2AEnabled   = "a2a_enabled"   // "true" or "false"; unset means false
	KeyIPFilter     = "ip_filter"     // the IP filter, JSON (IPFilter); unset means off
)

// MCP transports.
const (
	TransportSSE       = "sse"
	TransportStreaming = "streamable-http"
)

// MaxBody bounds the bodies of the settings writes.
const MaxBody = 64 << 10

// Store is what the settings need from the route store.
type Store interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
	SetSettings(ctx context.Context, kv map[string]string) error
}

// Counts are the sizes /api/system-info reports.
type Counts struct {
	Providers int `json:"providers"` // declared and stored
	Keys      int `json:"keys"`      // gateway keys, declared and stored
}

// Options configure the settings.
type Options struct {
	Store Store        // required
	Guard *admin.Guard // required: the login state, the proxies trusted, public routes
	// Version is the binary's version; Products the products this
	// process serves ("edge", "route").
	Version  string
	Products []string
	// Dialect is the database's ("sqlite", "postgres"); Redis whether
	// one is configured. Neither says where.
	Dialect string
	Redis   bool
	// Counts reports the providers and keys (/api/system-info).
	Counts func(ctx context.Context) (Counts, error)
	// Shutdown and Restart ask the process to stop, or to stop and
	// start again, once the requests in flight have drained; they must
	// not block. nil: the endpoint answers 501.
	Shutdown func()
	Restart  func()
	// Poll is how often the IP filter is read again from the store, to
	// follow changes made through other replicas (default 500 ms).
	Poll  time.Duration
	Clock clock.Clock
	Log   *slog.Logger
}

// Service serves the settings and screens requests with the IP filter.
type Service struct {
	opt     Options
	store   Store
	guard   *admin.Guard
	trusted []netip.Prefix
	started time.Time
	log     *slog.Logger

	filter atomic.Pointer[compiled] // the filter in force
	mu     sync.Mutex               // serialises loads of the filter
	raw    string                   // the stored value the filter was built from
}

// New builds the settings service; Init loads the IP filter.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Poll <= 0 {
		opt.Poll = 500 * time.Millisecond
	}
	s := &Service{opt: opt, store: opt.Store, guard: opt.Guard, trusted: opt.Guard.TrustProxy(),
		started: opt.Clock.Now(), log: opt.Log}
	s.filter.Store(&compiled{})
	return s
}

// Module is the settings as a gateway feature.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "settings",
		Package: "route/settings",
		Routes:  s.RegisterOpen,
		Admin:   s.RegisterAdmin,
		Settings: feature.Settings{
			Config: []string{"trust_proxy"},
			Stored: []string{store.SettingRequireLogin, KeyMCPEnabled, KeyMCPTransport, KeyA2AEnabled, KeyIPFilter},
		},
		Init:   s.loadFilter,
		Run:    s.follow,
		Screen: s.screen,
	}
}

// RegisterOpen adds the route anyone may call (behind the browser
// checks): GET /api/init, which a first-run page reads before any login.
func (s *Service) RegisterOpen(mux feature.Mux) {
	open := s.guard.Open(mux)
	open("GET /api/init", s.getInit)
}

// RegisterAdmin adds the management routes.
func (s *Service) RegisterAdmin(a feature.Admin) {
	a.Guarded("GET /api/settings", s.getGeneral)
	a.Guarded("PUT /api/settings", s.putGeneral)
	a.Guarded("PATCH /api/settings", s.patchGeneral)
	a.Guarded("GET /api/settings/ip-filter", s.getIPFilter)
	a.Guarded("PUT /api/settings/ip-filter", s.putIPFilter)
	a.Guarded("GET /api/system-info", s.systemInfo)
	a.Guarded("POST /api/restart", s.restart)
	a.Guarded("POST /api/shutdown", s.shutdown)
}

// ---- the general document ----

// General is the general settings document.
type General struct {
	RequireLogin bool   `json:"requireLogin"`
	MCPEnabled   bool   `json:"mcpEnabled"`
	MCPTransport string `json:"mcpTransport"`
	A2AEnabled   bool   `json:"a2aEnabled"`
}

// defaults is the document with nothing stored.
var defaults = General{RequireLogin: true, MCPTransport: TransportStreaming}

// links are the settings with documents of their own, shown read-only in
// the general document.
var links = map[string]string{
	"requireLogin":      "/api/settings/require-login",
	"password":          "/api/settings/password",
	"ipFilter":          "/api/settings/ip-filter",
	"registeredKeys":    "/api/settings/registered-keys",
	"usageRetention":    "/api/settings/usage-retention",
	"files":             "/api/settings/files",
	"resilience":        "/api/resilience",
	"backups":           "/api/db-backups/settings",
	"systemInformation": "/api/system-info",
}

// field is one field of the general document: its stored key, the
// stored value of its default, how a JSON value becomes the stored value
// and how the stored value shows in the document.
type field struct {
	key, def string
	parse    func(raw json.RawMessage) (string, error)
	get      func(g *General, v string)
}

var fields = map[string]field{
	"requireLogin": {store.SettingRequireLogin, "true", boolValue, func(g *General, v string) { g.RequireLogin = v != "false" }},
	"mcpEnabled":   {KeyMCPEnabled, "false", boolValue, func(g *General, v string) { g.MCPEnabled = v == "true" }},
	"mcpTransport": {KeyMCPTransport, TransportStreaming, transportValue, func(g *General, v string) {
		if v == TransportSSE || v == TransportStreaming {
			g.MCPTransport = v
		}
	}},
	"a2aEnabled": {KeyA2AEnabled, "false", boolValue, func(g *General, v string) { g.A2AEnabled = v == "true" }},
}

func boolValue(raw json.RawMessage) (string, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil || string(raw) == "null" {
		return "", errBadValue("a boolean")
	}
	if b {
		return "true", nil
	}
	return "false", nil
}

func transportValue(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || (s != TransportSSE && s != TransportStreaming) {
		return "", errBadValue(`"sse" or "streamable-http"`)
	}
	return s, nil
}

type errBadValue string

func (e errBadValue) Error() string { return "must be " + string(e) }

// General reads the general document.
func (s *Service) General(ctx context.Context) (General, error) {
	g := defaults
	for _, f := range fields {
		v, ok, err := s.store.Setting(ctx, f.key)
		if err != nil {
			return General{}, err
		}
		if ok {
			f.get(&g, v)
		}
	}
	return g, nil
}

func (s *Service) writeGeneral(w http.ResponseWriter, r *http.Request, status int) error {
	g, err := s.General(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, status, struct {
		General
		Links map[string]string `json:"links"`
	}{g, links})
	return nil
}

func (s *Service) getGeneral(w http.ResponseWriter, r *http.Request) error {
	return s.writeGeneral(w, r, http.StatusOK)
}

// decodeGeneral reads a document of some of the general fields and
// returns the stored values they set. "links" (read-only) is ignored;
// any other unknown field, a null or a bad value is a 400 naming it.
func decodeGeneral(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	var doc map[string]json.RawMessage
	if err := httpx.DecodeJSON(w, r, &doc, MaxBody); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, httpx.BadRequest("the body must be a JSON object of settings")
	}
	names := make([]string, 0, len(doc))
	for n := range doc {
		names = append(names, n)
	}
	sort.Strings(names) // the first bad field named is always the same one
	out := map[string]string{}
	for _, n := range names {
		if n == "links" {
			continue
		}
		f, ok := fields[n]
		if !ok {
			return nil, httpx.BadRequest("unknown setting %q (the general settings are %s)", n, strings.Join(fieldNames(), ", "))
		}
		v, err := f.parse(doc[n])
		if err != nil {
			return nil, httpx.BadRequest("setting %q %s", n, err.Error())
		}
		out[f.key] = v
	}
	return out, nil
}

func fieldNames() []string {
	var ns []string
	for n := range fields {
		ns = append(ns, strconv.Quote(n))
	}
	sort.Strings(ns)
	return ns
}

// putGeneral replaces the document: a field left out takes its default.
func (s *Service) putGeneral(w http.ResponseWriter, r *http.Request) error {
	set, err := decodeGeneral(w, r)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if _, ok := set[f.key]; !ok {
			set[f.key] = f.def
		}
	}
	if err := s.store.SetSettings(r.Context(), set); err != nil {
		return err
	}
	return s.writeGeneral(w, r, http.StatusOK)
}

// patchGeneral changes the fields given and keeps the others.
func (s *Service) patchGeneral(w http.ResponseWriter, r *http.Request) error {
	set, err := decodeGeneral(w, r)
	if err != nil {
		return err
	}
	if len(set) > 0 {
		if err := s.store.SetSettings(r.Context(), set); err != nil {
			return err
		}
	}
	return s.writeGeneral(w, r, http.StatusOK)
}
