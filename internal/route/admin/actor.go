package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// The kinds of caller of a management request.
const (
	ActorSession = "session" // the dashboard login (its cookie)
	ActorKey     = "key"     // a stored gateway key holding the route's scope
	ActorOpen    = "open"    // anyone allowed to reach it: login is off
)

// Actor is who made a management request: Kind (ActorSession, ActorKey,
// ActorOpen), the key's id and name (a session: a reference derived from
// its id, which does not reveal it, and "dashboard"), and the client's
// address as the trusted-proxy rules give it (httpx.ClientIP with
// Guard.TrustProxy).
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name"`
	Addr string `json:"addr"`
}

type actorKey struct{}

// ActorFrom returns the caller of the management request whose context
// is ctx, set by the guard before the handler runs.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// WithActor returns ctx carrying a as the caller, for a route that
// authenticates its callers itself (the registered keys' issuing keys).
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// sessionRef names a dashboard session in the audit log without
// revealing its id.
func sessionRef(sid string) string {
	sum := sha256.Sum256([]byte("route session ref:" + sid))
	return "session_" + hex.EncodeToString(sum[:6])
}

// BearerToken returns the token of an Authorization: Bearer header.
func BearerToken(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if len(a) < 7 || !strings.EqualFold(a[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(a[7:]), true
}

// inprocKey marks the in-process GETs the audit log's before and after
// documents are read with: a network client cannot set a context value.
type inprocKey struct{}

// protect is h behind the checks of a route scope may call, with the
// caller in the request's context and its changes recorded:
//
//   - a request carrying Authorization: Bearer is judged by that key
//     alone: a live stored key holding scope is admitted (whether or not
//     the login is required), any other is refused (401 unknown, revoked
//     or expired; 403 without the scope, registered, or from the
//     configuration file). The Host check does not apply: it keeps
//     rebinding pages from the credentials a browser adds by itself (the
//     cookie, the open mode), and a bearer key is no such credential; a
//     script may reach the gateway by any name. The Origin, Sec-Fetch-Site
//     and body-type checks still apply: a browser page of another site
//     cannot attach the header without a preflight the gateway never
//     grants, and a page that holds a key is refused all the same;
//   - any other request passes the browser checks (Host, Origin, body
//     type) and the dashboard login (or the open mode).
func (g *Guard) protect(h httpx.HandlerFunc, types []string, scope string) httpx.HandlerFunc {
	// Only the management scope's changes go to the compliance log: the
	// routes of other scopes (the MCP transports) are protocols whose
	// every message is a POST, audited by their own module, and a key
	// holding only such a scope must not be able to push the management
	// changes out of the log under its row cap.
	audited := h
	if scope == store.ScopeManage {
		audited = g.audited(h)
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Method == http.MethodGet && r.Context().Value(inprocKey{}) != nil {
			return h(w, r)
		}
		var a Actor
		if raw, ok := BearerToken(r); ok {
			if err := g.crossOrigin(r); err != nil {
				return err
			}
			if err := bodyType(r, types); err != nil {
				return err
			}
			var err error
			if a, err = g.keyActor(r, raw, scope); err != nil {
				return err
			}
		} else {
			if err := g.crossSite(r); err != nil {
				return err
			}
			if err := bodyType(r, types); err != nil {
				return err
			}
			var err error
			if a, err = g.sessionActor(r); err != nil {
				return err
			}
		}
		return audited(w, r.WithContext(WithActor(r.Context(), a)))
	}
}

// keyActor admits a request carrying the raw gateway key raw when it is
// a live stored key holding scope. The key is read from the store, not
// from a replica's memory, so that a revoked key is refused at once on
// every replica.
func (g *Guard) keyActor(r *http.Request, raw, scope string) (Actor, error) {
	if g.store == nil || raw == "" {
		return Actor{}, httpx.Unauthorized("invalid API key")
	}
	k, err := g.store.APIKeyByHash(r.Context(), auth.TokenHash(raw))
	if errors.Is(err, store.ErrNotFound) {
		sum := sha256.Sum256([]byte(raw))
		for _, ck := range g.opt.ConfigKeys {
			cs := sha256.Sum256([]byte(ck.Reveal()))
			if subtle.ConstantTimeCompare(sum[:], cs[:]) == 1 {
				return Actor{}, httpx.Forbidden("configuration-file keys may not call the management API: use a stored key with the %q scope (POST /api/keys), or the dashboard login", scope)
			}
		}
		return Actor{}, httpx.Unauthorized("invalid API key")
	}
	if err != nil {
		return Actor{}, err
	}
	now := g.clock.Now()
	if !k.RevokedAt.IsZero() || !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return Actor{}, httpx.Unauthorized("API key %s is revoked or expired", k.Prefix+"…")
	}
	if k.Kind == store.KindRegistered {
		return Actor{}, httpx.Forbidden("registered key %s may not call the management API: that needs a stored key with the %q scope", k.Name, scope)
	}
	if !slices.Contains(k.Scopes, scope) {
		return Actor{}, httpx.Forbidden("key %s lacks the %q scope this route needs (PATCH /api/keys/%s {\"scopes\": [...]} from the dashboard login adds it)", k.Name, scope, k.ID)
	}
	return Actor{Kind: ActorKey, ID: k.ID, Name: k.Name, Addr: httpx.ClientIP(r, g.opt.TrustProxy)}, nil
}
