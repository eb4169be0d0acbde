// Package backup owns the gateway's database backups: snapshots of the
// gateway's tables (route_*) as portable SQLite files kept in
// <data dir>/backups, their listing and retention, the optional daily
// automatic backup, restore from a kept backup, export and import of such
// files, and the management endpoints under /api/db-backups. The same file
// format serves SQLite and PostgreSQL deployments; the edge product's
// tables are never copied nor touched.
package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Errors returned (wrapped) by the service.
var (
	// ErrInvalid marks a request or a file that cannot be used (bad id,
	// not an OmniRoute backup, damaged, from a newer version); the
	// message says why and is safe to show.
	ErrInvalid = errors.New("invalid backup")
	// ErrNotFound is a well-formed id naming no kept backup.
	ErrNotFound = errors.New("backup not found")
	// ErrTooLarge is an upload beyond Options.MaxUpload.
	ErrTooLarge = errors.New("backup file too large")
)

// Kinds of backup.
const (
	KindManual    = "manual"
	KindAutomatic = "automatic"
)

// Setting keys (in the gateway's settings table).
const (
	SettingMaxBackups = "backup_max_backups" // decimal, 1..1000; unset means DefaultMaxBackups
	SettingAuto       = "backup_auto"        // "true" turns on the daily automatic backup
)

// DefaultMaxBackups is how many backups are kept when no setting says otherwise.
const DefaultMaxBackups = 10

// AutoInterval is the age of the newest automatic backup that triggers
// the next one while automatic backups are on.
const AutoInterval = 24 * time.Hour

// Settings reads and writes the service's settings (the route store).
type Settings interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
}

// Reloader makes the gateway read its state again after a restore (the
// routing state and the dashboard login's first-start checks).
type Reloader interface {
	Load(ctx context.Context) error
}

// Options configure a Service.
type Options struct {
	DB       *sqldb.DB // the database holding the gateway's tables
	Dir      string    // where backups are kept (<data dir>/backups); created when missing
	Settings Settings  // required
	Reload   Reloader  // optional: called after a restore or an import
	Clock    clock.Clock
	Log      *slog.Logger
	// MaxUpload bounds an imported file (default 512 MiB).
	MaxUpload int64
}

// Service creates, lists, prunes and restores backups.
type Service struct {
	opt Options
	mu  sync.Mutex // serialises creating, pruning, deleting and restoring
}

// Entry is one kept backup.
type Entry struct {
	ID        string    `json:"id"`
	Filename  string    `json:"filename"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
	Kind      string    `json:"kind"`
}

// New returns a service keeping backups in opt.Dir.
func New(opt Options) (*Service, error) {
	if opt.DB == nil || opt.Settings == nil || opt.Dir == "" {
		return nil, errors.New("backup: DB, Settings and Dir are required")
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.MaxUpload <= 0 {
		opt.MaxUpload = 512 << 20
	}
	return &Service{opt: opt}, nil
}

// File names: omni-<UTC time to the millisecond>[-auto].sqlite. The id of
// a backup is its file name; nothing else is ever resolved in Dir.
const timeLayout = "20060102T150405.000Z"

var namePattern = regexp.MustCompile(`^omni-(\d{8}T\d{6}\.\d{3}Z)(-auto)?\.sqlite$`)

func fileName(t time.Time, kind string) string {
	suffix := ""
	if kind == KindAutomatic {
		suffix = "-auto"
	}
	return "omni-" + t.UTC().Format(timeLayout) + suffix + ".sqlite"
}

// parseName validates an id and returns its time and kind.
func parseName(id string) (time.Time, string, error) {
	m := namePattern.FindStringSubmatch(id)
	if m == nil {
		return time.Time{}, "", fmt.Errorf("%w: %q is not a backup id (omni-<time>.sqlite, as listed by GET /api/db-backups)", ErrInvalid, clip(id))
	}
	t, err := time.Parse(timeLayout, m[1])
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %q is not a backup id", ErrInvalid, clip(id))
	}
	kind := KindManual
	if m[2] != "" {
		kind = KindAutomatic
	}
	return t, kind, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (s *Service) ensureDir() error {
	return os.MkdirAll(s.opt.Dir, 0o700)
}

// List returns the kept backups, newest first.
func (s *Service) List(ctx context.Context) ([]Entry, error) {
	des, err := os.ReadDir(s.opt.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read %s: %w", s.opt.Dir, err)
	}
	out := []Entry{}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		t, kind, err := parseName(de.Name())
		if err != nil {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Entry{ID: de.Name(), Filename: de.Name(), Size: info.Size(), CreatedAt: t, Kind: kind})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Get returns the kept backup id.
func (s *Service) Get(ctx context.Context, id string) (Entry, error) {
	t, kind, err := parseName(id)
	if err != nil {
		return Entry{}, err
	}
	info, err := os.Lstat(filepath.Join(s.opt.Dir, id))
	if errors.Is(err, os.ErrNotExist) || (err == nil && !info.Mode().IsRegular()) {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Entry{}, err
	}
	return Entry{ID: id, Filename: id, Size: info.Size(), CreatedAt: t, Kind: kind}, nil
}

// Create takes a backup of kind now and prunes the oldest beyond the limit.
func (s *Service) Create(ctx context.Context, kind string) (Entry, error) {
	if kind != KindManual && kind != KindAutomatic {
		return Entry{}, fmt.Errorf("%w: unknown kind %q", ErrInvalid, kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureDir(); err != nil {
		return Entry{}, err
	}
	tmp, err := s.tempPath(".snapshot-")
	if err != nil {
		return Entry{}, err
	}
	defer os.Remove(tmp)
	if err := s.snapshot(ctx, tmp); err != nil {
		return Entry{}, err
	}
	// A unique name: two backups within one millisecond get the next one.
	t := s.opt.Clock.Now().UTC().Truncate(time.Millisecond)
	var name string
	for {
		name = fileName(t, kind)
		if _, err := os.Lstat(filepath.Join(s.opt.Dir, name)); errors.Is(err, os.ErrNotExist) {
			break
		}
		t = t.Add(time.Millisecond)
	}
	if err := os.Rename(tmp, filepath.Join(s.opt.Dir, name)); err != nil {
		return Entry{}, fmt.Errorf("backup: keep %s: %w", name, err)
	}
	s.opt.Log.Info("database backup created", "backup", name, "kind", kind)
	if err := s.prune(ctx); err != nil {
		s.opt.Log.Warn("pruning old backups failed", "err", err)
	}
	return s.Get(ctx, name)
}

// Delete removes a kept backup.
func (s *Service) Delete(ctx context.Context, id string) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := os.Remove(filepath.Join(s.opt.Dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return err
}

// prune removes the oldest backups beyond the configured maximum. The
// caller holds s.mu.
func (s *Service) prune(ctx context.Context) error {
	cfg, err := s.Config(ctx)
	if err != nil {
		return err
	}
	list, err := s.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range list[min(len(list), cfg.MaxBackups):] {
		if err := os.Remove(filepath.Join(s.opt.Dir, e.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		s.opt.Log.Info("old database backup removed", "backup", e.ID)
	}
	return errors.Join(errs...)
}

// tempPath names a file in Dir that does not exist yet (hidden from List).
func (s *Service) tempPath(prefix string) (string, error) {
	f, err := os.CreateTemp(s.opt.Dir, prefix+"*.sqlite")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return "", err
	}
	return name, nil
}

// Config is the service's settings.
type Config struct {
	MaxBackups int  `json:"max_backups"`
	Auto       bool `json:"auto_backup"`
}

// Config returns the current settings.
func (s *Service) Config(ctx context.Context) (Config, error) {
	c := Config{MaxBackups: DefaultMaxBackups}
	v, ok, err := s.opt.Settings.Setting(ctx, SettingMaxBackups)
	if err != nil {
		return c, err
	}
	if ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 1000 {
			c.MaxBackups = n
		}
	}
	v, ok, err = s.opt.Settings.Setting(ctx, SettingAuto)
	if err != nil {
		return c, err
	}
	c.Auto = ok && strings.EqualFold(v, "true")
	return c, nil
}

// SetConfig stores the settings and applies the new limit at once.
func (s *Service) SetConfig(ctx context.Context, c Config) error {
	if c.MaxBackups < 1 || c.MaxBackups > 1000 {
		return fmt.Errorf("%w: max_backups must be between 1 and 1000", ErrInvalid)
	}
	if err := s.opt.Settings.SetSetting(ctx, SettingMaxBackups, strconv.Itoa(c.MaxBackups)); err != nil {
		return err
	}
	if err := s.opt.Settings.SetSetting(ctx, SettingAuto, strconv.FormatBool(c.Auto)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prune(ctx)
}

// AutoBackup takes an automatic backup when automatic backups are on and
// the newest automatic one is at least AutoInterval old (or there is
// none); it reports whether it took one.
func (s *Service) AutoBackup(ctx context.Context) (bool, error) {
	cfg, err := s.Config(ctx)
	if err != nil || !cfg.Auto {
		return false, err
	}
	list, err := s.List(ctx)
	if err != nil {
		return false, err
	}
	now := s.opt.Clock.Now()
	for _, e := range list { // newest first
		if e.Kind == KindAutomatic {
			if now.Sub(e.CreatedAt) < AutoInterval {
				return false, nil
			}
			break
		}
	}
	if _, err := s.Create(ctx, KindAutomatic); err != nil {
		return false, err
	}
	return true, nil
}

// Run checks every check interval (default: 10 minutes) whether an
// automatic backup is due, until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = 10 * time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := s.AutoBackup(ctx); err != nil && ctx.Err() == nil {
				s.opt.Log.Warn("automatic database backup failed", "err", err)
			}
		}
	}
}
