package app

import (
	"path/filepath"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/backup"
	"github.com/omniedge/omni/internal/route/manage"
)

// newBackups builds the database backup service (route/backup) over the
// gateway's database; backups are kept in <data dir>/backups and a
// restore reloads the manager's state.
func newBackups(cfg *config.Config, d Deps, st manage.Store, mgr *manage.Manager) (*backup.Service, error) {
	return backup.New(backup.Options{DB: d.DB, Dir: filepath.Join(cfg.DataDir, "backups"), Settings: st, Reload: mgr, Clock: d.Clock, Log: d.Log})
}
