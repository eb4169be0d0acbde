package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/proxies"
)

// proxiesModule builds the outbound proxies (route/proxies): the routing
// state built next asks it, on every reload, for each connection's
// upstream client, and its writes reload that state. Without a store: no
// module (every upstream call goes out directly).
func proxiesModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	s, err := proxies.New(proxies.Options{DB: w.d.DB, MasterKey: w.d.MasterKey, HTTP: w.d.HTTP,
		// The routing state is built after this module: looked up when
		// a proxy changes.
		Reload: func(ctx context.Context) error {
			if w.state == nil {
				return nil
			}
			return w.state.Reload(ctx)
		},
		ProviderOf: func(credential string) (string, bool) {
			if w.state == nil {
				return "", false
			}
			for _, p := range w.state.Snapshot().Providers {
				for _, c := range p.Credentials {
					if c.ID == credential {
						return p.ID, true
					}
				}
			}
			return "", false
		},
		Clock: w.d.Clock, Log: w.d.Log})
	if err != nil {
		return feature.Module{}, err
	}
	w.proxies = s
	return s.Module(), nil
}
