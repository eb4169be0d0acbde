package app

import (
	"path/filepath"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/backup"
	"github.com/omniedge/omni/internal/route/store"
)

// newBackups builds the database backup service (route/backup) over the
// gateway's database; backups are kept in <data dir>/backups and a
// restore reloads the routing state (and prepares the dashboard login).
func newBackups(cfg *config.Config, d Deps, st *store.Store, reload backup.Reloader) (*backup.Service, error) {
	return backup.New(backup.Options{DB: d.DB, Dir: filepath.Join(cfg.DataDir, "backups"), Settings: st, Reload: reload, Clock: d.Clock, Log: d.Log})
}
