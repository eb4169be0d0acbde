package app

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/mcp"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/store"
)

// mcpModule builds the MCP server (route/mcp) over the gateway's own
// state: the routing state's models, chats dispatched through the
// gateway's handler as a gateway key (api.Dispatcher), the usage reads of
// the route store, the resilience tracker, the limits gate's budgets and
// the stored keys. Its routes are management routes, so without a store:
// no module.
func mcpModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil || w.state == nil {
		return feature.Module{}, errors.New("route: the mcp module comes after the gateway and the routing state")
	}
	if w.st == nil {
		return feature.Module{}, nil
	}
	st, state, tracker, gate := w.st, w.state, w.app.Resilience, w.limits
	src := mcp.Sources{
		Models: func() []mcp.Model {
			var out []mcp.Model
			for _, m := range state.Models() {
				out = append(out, mcp.Model{ID: m.ID, OwnedBy: m.OwnedBy, Kind: m.Kind})
			}
			return out
		},
		Dispatch: w.app.API.NewDispatcher(w.app.Handler),
		KeyLive: func(id string) bool {
			k, ok := state.Keys().Key(id)
			return ok && k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || k.ExpiresAt.After(w.d.Clock.Now()))
		},
		Usage: func(ctx context.Context, since time.Time, keyID string) (any, error) {
			return st.UsageTotals(ctx, store.UsageFilter{Since: since, KeyID: keyID})
		},
		Keys: func(ctx context.Context) ([]mcp.Key, error) {
			keys, err := st.APIKeys(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]mcp.Key, 0, len(keys))
			for _, k := range keys {
				out = append(out, maskedKey(k))
			}
			return out, nil
		},
	}
	if tracker != nil {
		src.Health = func(context.Context) (any, error) { return providerHealth(tracker), nil }
	}
	if gate != nil {
		src.Budgets = func(ctx context.Context, keyID string) (any, error) { return gate.Budgets(ctx, keyID) }
	}
	// The caller is the actor the guard put in the request's context: the
	// dashboard login, a stored key holding the mcp scope (its scopes
	// from the live key list), or anyone while the login is off.
	caller := func(r *http.Request) mcp.Caller {
		a, ok := admin.ActorFrom(r.Context())
		if !ok {
			return mcp.Caller{Kind: admin.ActorOpen}
		}
		c := mcp.Caller{Kind: a.Kind, Name: a.Name}
		if a.Kind == admin.ActorKey {
			c.KeyID = a.ID
			if k, ok := state.Keys().Key(a.ID); ok {
				c.Scopes = k.Scopes
			}
		}
		return c
	}
	s := mcp.New(mcp.Options{Settings: st, DB: w.d.DB, Sources: src, Caller: caller, Clock: w.d.Clock, Log: w.d.Log})
	return s.Module(), nil
}

func providerHealth(t *resilience.Tracker) any {
	return map[string]any{"breakers": t.Breakers(), "cooldowns": t.Cooldowns(), "lockouts": t.Lockouts(), "waiting": t.Waiting()}
}

// maskedKey is a stored key as the MCP key list shows it: never its hash,
// only its display prefix.
func maskedKey(k store.APIKey) mcp.Key {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return mcp.Key{ID: k.ID, Name: k.Name, Masked: k.Prefix + "…", Kind: k.Kind, Scopes: scopes, CreatedAt: k.CreatedAt,
		LastUsedAt: opt(k.LastUsedAt), ExpiresAt: opt(k.ExpiresAt), Revoked: !k.RevokedAt.IsZero()}
}
