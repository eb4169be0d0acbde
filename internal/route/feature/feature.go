// Package feature is the contract of an OmniRoute feature module: one
// package's declaration, in one place, of the routes it serves, the
// pipeline stage it installs, the migrations it owns, the settings it
// reads, the provider types it brings and its background loop. A dialect,
// a provider format, a pipeline stage and an admin resource are each one
// module; route/app assembles the gateway from one explicit list of them.
// The package holds types only: it imports the pipeline's and the
// router's contracts, the provider registry and httpx, and knows no
// feature.
package feature

import (
	"context"
	"io/fs"
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// Module is one feature of the gateway. Every field but Name and Package
// is optional; the zero value of each means the module has none.
type Module struct {
	// Name is short and unique among the gateway's modules ("usage").
	Name string
	// Package is the import path of the package that implements the
	// feature, below the module path ("route/usage").
	Package string

	// Routes registers the routes the module serves on the gateway's
	// listener whatever the configuration, each labelled with who may
	// call it (httpx.WithAuth; a mounted handler listing routes of its
	// own keeps their labels).
	Routes func(mux Mux)
	// Admin registers the module's management routes, behind the
	// dashboard login. It is called only when the gateway serves the
	// management API (it has a store).
	Admin func(a Admin)

	// Stage is what the module installs into the request pipeline.
	Stage Stage
	// Migrations are the schema the module owns.
	Migrations Migrations
	// Settings are what the module reads besides its dependencies: for
	// the module table (docs/route-modules.md).
	Settings Settings
	// Providers registers the provider types (upstream formats) the
	// module brings. Only a module that needs nothing built may bring
	// provider types: the registry exists before any other module.
	Providers func(reg *provider.Registry)

	// Init does the I/O the module needs before it serves (loading its
	// state); it runs after every module's migrations.
	Init func(ctx context.Context) error
	// Run is the module's background loop; Lifetime says how it ends.
	Run      func(ctx context.Context) error
	Lifetime Lifetime
	// Settle waits, once the gateway stops, until the requests the
	// module is handling have settled (every call told its gates how it
	// ended), or until ctx ends.
	Settle func(ctx context.Context) error

	// Screen sees every request the gateway's listener receives before
	// it is routed; an error refuses it (written as the JSON error it
	// is). management reports whether a request is for the management
	// side (the management API under /api/ and the dashboard) rather
	// than a gateway endpoint; it looks the route up, so call it only
	// when the answer matters. It must be cheap: it runs on every
	// request.
	Screen func(r *http.Request, management func(*http.Request) bool) error
}

// Lifetime is how a module's Run ends when the gateway stops.
type Lifetime int

const (
	// Detached: Run ends with the gateway's context; nothing waits for it.
	Detached Lifetime = iota
	// Awaited: once the context ends, the gateway waits for Run to return
	// before the requests settle; its error is the gateway's.
	Awaited
	// Settling: Run writes what requests settle (spend, usage). Its
	// context outlives the gateway's until the requests in flight have
	// settled (or the settle timeout passed), and the gateway waits for
	// its last flush.
	Settling
)

// String names the lifetime in the module table.
func (l Lifetime) String() string {
	switch l {
	case Awaited:
		return "awaited"
	case Settling:
		return "settling"
	}
	return "detached"
}

// Mux is where a module registers routes that say themselves who may
// call them (httpx.Mux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Registrar registers one management route: pattern as for
// http.ServeMux, h behind the checks of the registrar that made it.
type Registrar func(pattern string, h httpx.HandlerFunc)

// Admin is where a module registers management routes: every one needs
// the dashboard login or a management key (a stored gateway key with the
// manage scope, as a Bearer token), refuses what a web page of another
// site could send, and has its changes recorded in the audit log
// ("management session or key (manage)" in the route list).
type Admin struct {
	// Guarded takes JSON bodies only.
	Guarded Registrar
	// Upload returns Guarded for routes whose writes take a file: besides
	// JSON they accept the given body types. Register only those routes
	// through it: every body type it accepts is one a web page of
	// another site can send without a preflight.
	Upload func(types ...string) Registrar
	// Scoped returns a registrar for routes the dashboard login or a
	// stored key holding scope may call instead of a management key
	// (the MCP transports: "mcp"); the caller is admin.ActorFrom's.
	Scoped func(scope string) Registrar
}

// Stage is what a module installs into the request pipeline. A pipeline
// has at most one cache, one idempotency stage, one response store and
// one health.
type Stage struct {
	// Gate sees every call before it is routed and hears how it ended;
	// the gates run in Order, then in the modules' order.
	Gate  pipeline.Gate
	Order Order

	// Rewrite changes requests before every other stage sees them; the
	// rewriters run in the modules' order.
	Rewrite pipeline.Rewriter

	Cache       pipeline.Cache
	Idempotency pipeline.Idempotency
	// Responses keeps stored Responses conversations (previous_response_id).
	Responses pipeline.ResponseStore
	// Health is what the router consults before every attempt (breakers,
	// cooldowns, lockouts, the request queue).
	Health router.Health
}

// Order places a gate among the gates.
type Order int

const (
	// Record gates run first: they see every call, the refusals of the
	// gates after them included (usage records).
	Record Order = 100
	// Enforce gates refuse calls: key policies, rate limits, budgets.
	Enforce Order = 200
)

// String names the order in the module table.
func (o Order) String() string {
	switch o {
	case Record:
		return "record"
	case Enforce:
		return "enforce"
	}
	return ""
}

// Migrations are the schema a module owns: versions of the route store's
// migrations (product "route", which existing databases have recorded),
// and, for a module with tables of its own, a product of its own.
type Migrations struct {
	// Route lists the versions (the timestamp before "_" in the file name)
	// of internal/route/store/migrations the module owns. Every version
	// there is owned by exactly one module.
	Route []string
	// Product names a schema of the module's own, applied from FS (one
	// directory per dialect, as sqldb.Migrate reads it) under that
	// product name before any module's Init. It must differ from every
	// other product ("route", "edge", …).
	Product string
	FS      fs.FS
}

// Settings are what a module reads besides its dependencies.
type Settings struct {
	// Config names configuration keys (YAML names, "route.responses_ttl").
	Config []string
	// Stored names keys of the route store's settings table.
	Stored []string
}

// Operations is the gateway transport's side of the endpoints of a
// modality beyond chat (rerank, moderations …), which route/api
// implements and a modality's module (built after the gateway) uses: the
// gateway key check of every dialect endpoint, the request's Origin, the
// engine's operation path (pipeline.Engine.Do), the request counted
// until it settles, and errors in OpenAI's shape.
type Operations interface {
	// JSON returns the handler of an endpoint taking a JSON body of at
	// most maxBody bytes: a body of another Content-Type is a 415, a
	// larger one a 413, both before h runs; h's error is rendered in
	// OpenAI's error shape (with Retry-After and the attempts made).
	JSON(maxBody int64, h OpHandler) http.Handler
	// Body returns the handler of an endpoint whose h reads the body
	// itself (a multipart upload streamed to disk or upstream, a GET):
	// reading past maxBody bytes (0: no cap) fails with
	// *http.MaxBytesError, which h may return as it is to answer 413.
	// Errors are rendered as JSON's are.
	Body(maxBody int64, h BodyHandler) http.Handler
	// KeyID is the id of the gateway key that the request whose context
	// is ctx was authenticated with ("" for a keyless local client), to
	// scope what a key owns (files, batches).
	KeyID(ctx context.Context) string
}

// BodyHandler serves an endpoint that reads its own request body (see
// Operations.Body).
type BodyHandler func(w http.ResponseWriter, r *http.Request, run RunOp) error

// OpHandler decodes a modality's request body, runs its operation with
// run and writes the answer.
type OpHandler func(w http.ResponseWriter, r *http.Request, body []byte, run RunOp) error

// RunOp runs op through the pipeline (pipeline.Engine.Do) for the
// request being served; on success it has set X-OmniRoute-Model.
type RunOp func(op *pipeline.Op) (*pipeline.OpAnswer, error)
