package app

import (
	"context"
	"errors"

	"github.com/omniedge/omni/internal/route/audio"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/moderation"
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

// audioModule builds POST /v1/audio/transcriptions and /v1/audio/speech
// (route/audio); uploads are spooled under the data directory.
func audioModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the audio module comes after the gateway")
	}
	return audio.New(w.app.API, audio.Options{TempDir: audio.TempDir(w.cfg.DataDir)}).Module(), nil
}
