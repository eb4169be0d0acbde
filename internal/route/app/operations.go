package app

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/omniedge/omni/internal/route/audio"
	"github.com/omniedge/omni/internal/route/batches"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/files"
	"github.com/omniedge/omni/internal/route/images"
	"github.com/omniedge/omni/internal/route/media"
	"github.com/omniedge/omni/internal/route/moderation"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/rerank"
	"github.com/omniedge/omni/internal/route/search"
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

// filesModule builds the Files API (route/files): metadata in the
// gateway's database, content in <data dir>/files; the batches module
// reads and writes a key's files through w.files. Without a store: no
// module.
func filesModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the files module comes after the gateway")
	}
	if w.st == nil {
		return feature.Module{}, nil
	}
	var storage files.Storage
	if c := w.cfg.Route.FilesS3; c != nil {
		storage = &files.S3{Endpoint: c.Endpoint, Bucket: c.Bucket, Region: c.Region, AccessKey: c.AccessKey.Reveal(),
			SecretKey: c.SecretKey.Reveal(), Prefix: c.Prefix, Now: w.d.Clock.Now}
	} else {
		dir, err := files.NewDir(filepath.Join(w.cfg.DataDir, "files"))
		if err != nil {
			return feature.Module{}, err
		}
		storage = dir
	}
	s, err := files.New(files.Options{Ops: w.app.API, DB: w.d.DB, Storage: storage, Settings: w.st, Clock: w.d.Clock, Log: w.d.Log})
	if err != nil {
		return feature.Module{}, err
	}
	w.files = s
	return s.Module(), nil
}

// mediaModule builds the video and music generation jobs (route/media);
// they are kept in the database, so a gateway without one serves none.
func mediaModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the media module comes after the gateway")
	}
	if w.d.DB == nil {
		return feature.Module{}, nil
	}
	return media.New(w.app.API, w.app.Router, w.d.DB, media.Config{Clock: w.d.Clock, Log: w.d.Log}).Module(), nil
}

// searchModule builds the search endpoints (route/search) over the
// gateway's operations and its response cache; the search providers are
// the enabled providers of a search type, in id order.
func searchModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil || w.state == nil {
		return feature.Module{}, errors.New("route: the search module comes after the gateway and the routing state")
	}
	state := w.state
	providers := func() []search.Configured {
		var out []search.Configured
		for _, p := range state.Snapshot().Providers {
			if _, ok := search.CapabilitiesOf(p.Type); ok && p.Enabled {
				out = append(out, search.Configured{ID: p.ID, Type: p.Type})
			}
		}
		return out
	}
	return search.New(search.Options{Ops: w.app.API, Policy: w.app.API, Providers: providers, Cache: w.cache, Clock: w.d.Clock}).Module(), nil
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

// audioModule builds POST /v1/audio/transcriptions and /v1/audio/speech
// (route/audio); uploads are spooled under the data directory.
func audioModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the audio module comes after the gateway")
	}
	return audio.New(w.app.API, audio.Options{TempDir: audio.TempDir(w.cfg.DataDir)}).Module(), nil
}

// batchesModule builds the Batches API (route/batches) over the files
// module's service: its runner sends each line through the gateway's
// whole handler as the batch's key (api.Dispatcher). Without a store:
// no module.
func batchesModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.app.API == nil {
		return feature.Module{}, errors.New("route: the batches module comes after the gateway")
	}
	if w.st == nil || w.files == nil {
		return feature.Module{}, nil
	}
	d := w.app.API.NewDispatcher(w.app.Handler)
	s := batches.New(w.app.API, d, batches.NewStore(w.d.DB), w.files, batches.Config{Events: w.publisher()}, w.d.Clock, w.d.Log)
	return s.Module(), nil
}
