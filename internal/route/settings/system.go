package settings

import (
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// getInit answers what a first-run page needs before any login: whether
// a dashboard password exists (else setup is required, and how), whether
// the login is required, the version and the products and features on.
// It tells nothing a visitor of the login page could not learn by trying.
func (s *Service) getInit(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	required, err := s.guard.RequireLogin(ctx)
	if err != nil {
		return err
	}
	hash, err := s.guard.PasswordHash(ctx)
	if err != nil {
		return err
	}
	g, err := s.General(ctx)
	if err != nil {
		return err
	}
	products := map[string]bool{"route": true, "edge": slices.Contains(s.opt.Products, "edge")}
	out := map[string]any{
		"initialized":   hash != "",
		"hasPassword":   hash != "",
		"setupRequired": hash == "",
		"requireLogin":  required,
		"version":       s.version(),
		"products":      products,
		"features":      map[string]bool{"mcp": g.MCPEnabled, "a2a": g.A2AEnabled},
	}
	if hash == "" {
		out["setup"] = "POST /api/auth/setup {\"token\", \"password\"} with the one-time setup token printed in the gateway's log at start"
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) version() string {
	if s.opt.Version == "" {
		return "dev"
	}
	return s.opt.Version
}

// systemInfo answers diagnostics for a support report. It names no
// secret, no address of the database or Redis and no key: the dialect,
// whether Redis is on, counts.
func (s *Service) systemInfo(w http.ResponseWriter, r *http.Request) error {
	var counts Counts
	if s.opt.Counts != nil {
		var err error
		if counts, err = s.opt.Counts(r.Context()); err != nil {
			return err
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	now := s.opt.Clock.Now()
	f := s.IPFilter()
	products := slices.Clone(s.opt.Products)
	if len(products) == 0 {
		products = []string{"route"}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"version":       s.version(),
		"goVersion":     runtime.Version(),
		"os":            runtime.GOOS,
		"arch":          runtime.GOARCH,
		"cpus":          runtime.NumCPU(),
		"startedAt":     s.started.UTC(),
		"uptimeSeconds": int64(now.Sub(s.started) / time.Second),
		"products":      products,
		"database":      map[string]any{"dialect": s.opt.Dialect},
		"redis":         map[string]any{"enabled": s.opt.Redis},
		"counts":        counts,
		"ipFilter":      map[string]any{"enabled": f.Enabled, "allow": len(f.Allow), "block": len(f.Block), "applyTo": f.ApplyTo},
		"runtime": map[string]any{
			"goroutines":     runtime.NumGoroutine(),
			"heapAllocBytes": ms.HeapAlloc,
			"sysBytes":       ms.Sys,
			"numGC":          ms.NumGC,
		},
	})
	return nil
}

func (s *Service) restart(w http.ResponseWriter, r *http.Request) error {
	return s.lifecycle(w, r, "restart", s.opt.Restart)
}

func (s *Service) shutdown(w http.ResponseWriter, r *http.Request) error {
	return s.lifecycle(w, r, "shutdown", s.opt.Shutdown)
}

// lifecycle answers 202 and then asks the process to do what (restart,
// shutdown) through do. The answer is flushed first, so the caller gets
// it before the listener starts draining.
func (s *Service) lifecycle(w http.ResponseWriter, r *http.Request, what string, do func()) error {
	if do == nil {
		return httpx.Errorf(http.StatusNotImplemented, "not_supported", "this gateway was started without a way to %s the process", what)
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]any{"ok": true, "action": what,
		"message": "the gateway stops accepting requests, lets those in flight finish, then does a " + what})
	_ = http.NewResponseController(w).Flush()
	s.log.Warn("process "+what+" requested through the management API", "client", httpx.ClientIP(r, s.trusted))
	do()
	return nil
}
