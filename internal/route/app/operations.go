package app

import (
	"context"
	"errors"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/images"
	"github.com/omniedge/omni/internal/route/moderation"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/rerank"
)

// The modalities beyond chat are modules built after the gateway: each
// serves its endpoints over the gateway's operations (route/api's key
// check, engine and error shape; feature.Operations), whose Do runs the
// stages installed above it. Their provider types, when they bring any,
// are a module of their own at the top of the list.

// rerankModule builds POST /v1/rerank (route/rerank).
func rerankModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the rerank module comes after the gateway")
	}
	return rerank.New(w.app.API).Module(), nil
}

// moderationModule builds POST /v1/moderations (route/moderation).
func moderationModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the moderation module comes after the gateway")
	}
	return moderation.New(w.app.API, w.app.Router).Module(), nil
}

// imagesModule builds the image endpoints (route/images): the image
// models of the routing state are GET /v1/images/generations' list.
func imagesModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the images module comes after the gateway")
	}
	state := w.app.State
	return images.New(images.Deps{Ops: w.app.API, Catalog: w.app.Router, Clock: w.d.Clock, Models: func() []images.Model {
		var out []images.Model
		if state == nil {
			return nil
		}
		for _, m := range state.Models() {
			if m.Kind == provider.KindImage {
				out = append(out, images.Model{ID: m.ID, OwnedBy: m.OwnedBy})
			}
		}
		return out
	}}).Module(), nil
}
