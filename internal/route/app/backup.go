package app

import (
	"context"
	"path/filepath"

	"github.com/omniedge/omni/internal/route/backup"
	"github.com/omniedge/omni/internal/route/feature"
)

// backupModule builds the database backup service (route/backup) over
// the gateway's database; backups are kept in <data dir>/backups and a
// restore reloads the routing state (and prepares the dashboard login).
// Without a store: no module.
func backupModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	s, err := backup.New(backup.Options{DB: w.d.DB, Dir: filepath.Join(w.cfg.DataDir, "backups"), Settings: w.st,
		Reload: reloader{account: w.account, state: w.state}, Clock: w.d.Clock, Log: w.d.Log})
	if err != nil {
		return feature.Module{}, err
	}
	return s.Module(), nil
}
