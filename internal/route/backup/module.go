package backup

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
)

// UploadTypes are the body types the import takes besides JSON: the file
// as the raw body or a multipart form.
var UploadTypes = []string{"application/octet-stream", "application/vnd.sqlite3", "application/x-sqlite3", "multipart/form-data"}

// Module is the backup service as a gateway feature: /api/db-backups
// (the import takes a file, every other route JSON only), its stored
// settings, and the daily automatic backup when it is turned on.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:     "backup",
		Package:  "route/backup",
		Admin:    func(a feature.Admin) { s.Register(a.Guarded, a.Upload(UploadTypes...)) },
		Settings: feature.Settings{Config: []string{"data"}, Stored: []string{SettingMaxBackups, SettingAuto}},
		Run:      func(ctx context.Context) error { return s.Run(ctx, 0) },
	}
}
