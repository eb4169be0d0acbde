package app

import (
	"context"
	"errors"
	"time"

	"github.com/omniedge/omni/internal/route/a2a"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/store/usagestore"
)

// a2aModule builds the A2A server (route/a2a) over the gateway's key
// check and dispatcher, its skills reading the routing state, the limits
// gate, the usage records and the resilience tracker. It is switched on
// by a stored setting, so a gateway without a store serves none.
func a2aModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the a2a module comes after the gateway")
	}
	if w.st == nil {
		return feature.Module{}, nil
	}
	st, state, table, tr, gate, api := w.st, w.state, w.app.Table, w.app.Resilience, w.limits, w.app.API
	src := a2a.Sources{
		Models: func() []a2a.Model {
			ms := state.Models()
			out := make([]a2a.Model, len(ms))
			for i, m := range ms {
				out[i] = a2a.Model{ID: m.ID, Provider: m.OwnedBy, Kind: m.Kind}
			}
			return out
		},
		Providers: func(context.Context) ([]a2a.Provider, error) {
			var out []a2a.Provider
			for _, p := range state.Snapshot().Providers {
				out = append(out, a2a.Provider{ID: p.ID, Type: p.Type, Enabled: p.Enabled, Active: len(table.Connections(p.ID)) > 0, Source: p.Source})
			}
			return out, nil
		},
		Resolve: func(model string) ([]string, error) {
			ts, _, err := state.Resolve(model)
			out := make([]string, len(ts))
			for i, t := range ts {
				out[i] = t.String()
			}
			return out, err
		},
		Permits: api.PermitsModel,
		Available: func(provider string) bool {
			if tr == nil {
				return true
			}
			for _, b := range tr.Breakers() {
				if b.Provider == provider && b.State == resilience.Open {
					return false
				}
			}
			return true
		},
		Quota: func(ctx context.Context, keyID string) (any, error) {
			out := map[string]any{"apiKeyId": keyID}
			k, ok := state.Keys().Key(keyID)
			switch {
			case keyID == "":
				out["note"] = "a keyless local client: no key policy, limits or budget apply"
				return out, nil
			case !ok:
				out["note"] = "a key of the configuration: no policy, limits or budget apply"
				return out, nil
			}
			out["name"] = k.Name
			out["allowedModels"] = nonNil(k.AllowedModels)
			out["allowedProviders"] = nonNil(k.AllowedProviders)
			out["limits"] = map[string]int64{"rpm": k.Limits.RPM, "rpd": k.Limits.RPD, "tpm": k.Limits.TPM, "tpd": k.Limits.TPD}
			if !k.ExpiresAt.IsZero() {
				out["expiresAt"] = k.ExpiresAt.UTC()
			}
			out["budget"] = nil
			if gate != nil {
				b, err := gate.BudgetStatus(ctx, keyID)
				if err != nil {
					return nil, err
				}
				if b != nil {
					out["budget"] = b
				}
			}
			return out, nil
		},
		Usage: func(ctx context.Context, keyID string, since, until time.Time) (any, error) {
			f := usagestore.UsageFilter{Since: since, Until: until, KeyID: keyID}
			tot, err := st.UsageTotals(ctx, f)
			if err != nil {
				return nil, err
			}
			byModel, err := st.UsageGroups(ctx, f, "model", 20)
			if err != nil {
				return nil, err
			}
			byProvider, err := st.UsageGroups(ctx, f, "provider", 20)
			if err != nil {
				return nil, err
			}
			return map[string]any{"totals": tot, "byModel": nonNil(byModel), "byProvider": nonNil(byProvider)}, nil
		},
		Health: func(context.Context) (any, error) {
			breaker := map[string]string{}
			out := map[string]any{"breakers": []any{}, "cooldowns": []any{}, "lockouts": []any{}}
			if tr != nil {
				bs := tr.Breakers()
				for _, b := range bs {
					breaker[b.Provider] = b.State
				}
				out = map[string]any{"breakers": nonNil(bs), "cooldowns": nonNil(tr.Cooldowns()),
					"lockouts": nonNil(tr.Lockouts()), "queueWaiting": tr.Waiting()}
			}
			type providerHealth struct {
				ID      string `json:"id"`
				Enabled bool   `json:"enabled"`
				Active  bool   `json:"active"`
				Breaker string `json:"breaker"`
			}
			ps := []providerHealth{}
			for _, p := range state.Snapshot().Providers {
				b := breaker[p.ID]
				if b == "" {
					b = resilience.Closed
				}
				ps = append(ps, providerHealth{ID: p.ID, Enabled: p.Enabled, Active: len(table.Connections(p.ID)) > 0, Breaker: b})
			}
			out["providers"] = ps
			return out, nil
		},
	}
	s := a2a.New(a2a.Options{Ops: api, Dispatcher: api.NewDispatcher(w.app.Handler), Settings: st, Sources: src,
		Clock: w.d.Clock, Log: w.d.Log})
	return s.Module(), nil
}

// nonNil is s, or an empty slice for nil (a JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
