package admin

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// MaxBody bounds management request bodies.
const MaxBody = 1 << 20

// Decode reads a JSON request body into v.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpx.DecodeJSON(w, r, v, MaxBody)
}

// StoreError maps store errors to HTTP errors; anything else stays a 500.
func StoreError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return httpx.NotFound("%s", err.Error())
	case errors.Is(err, store.ErrConflict):
		return httpx.Conflict("%s", err.Error())
	}
	return err
}

// Reloader installs what was just written to the store (the routing
// state).
type Reloader interface {
	Reload(ctx context.Context) error
}

// Change finishes a write: on success the state is reloaded and body (if
// any) is written with status.
func Change(w http.ResponseWriter, r *http.Request, rl Reloader, status int, body func() any, err error) error {
	if err != nil {
		return StoreError(err)
	}
	if err := rl.Reload(r.Context()); err != nil {
		return err
	}
	if body == nil {
		w.WriteHeader(status)
		return nil
	}
	httpx.WriteJSON(w, status, body())
	return nil
}

// ReadOnly refuses to change what the configuration file declares.
func ReadOnly(what string) error {
	return httpx.Errorf(http.StatusConflict, "read_only", "%s is declared in the configuration file; change it there", what)
}

// CheckPattern validates a glob pattern (path.Match syntax).
func CheckPattern(p, field string) error {
	if strings.TrimSpace(p) == "" {
		return httpx.BadRequest("%q is required", field)
	}
	if len(p) > 256 {
		return httpx.BadRequest("%q is longer than 256 characters", field)
	}
	if _, err := path.Match(p, ""); err != nil {
		return httpx.BadRequest("%q %q is not a valid glob pattern (use *, ? and [...])", field, p)
	}
	return nil
}
