// Package files is the gateway's Files API: POST /v1/files (a multipart
// upload streamed to storage, never held in memory), GET /v1/files, GET
// and DELETE /v1/files/{id} and GET /v1/files/{id}/content (streamed,
// with ranges), in OpenAI's shapes. A file belongs to the gateway key
// that uploaded it: another key's file is a 404, as a missing one. It
// owns the files' metadata (the table gateway_files of its own migration
// product, route_files), their content (a Storage: a directory under
// the data directory by default), the caps and quotas that bound both,
// and the sweep of expired files. Service.Put and Service.Open are how
// other modules (batches) write and read a key's files.
package files

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/feature"
)

// The purposes a file may have: OpenAI's that a client uploads, and
// PurposeBatchOutput, which only the gateway writes (a batch's output
// and error files).
const (
	PurposeAssistants  = "assistants"
	PurposeBatch       = "batch"
	PurposeFineTune    = "fine-tune"
	PurposeVision      = "vision"
	PurposeUserData    = "user_data"
	PurposeEvals       = "evals"
	PurposeBatchOutput = "batch_output"
)

// uploadable are the purposes a client may upload with.
var uploadable = map[string]bool{PurposeAssistants: true, PurposeBatch: true, PurposeFineTune: true,
	PurposeVision: true, PurposeUserData: true, PurposeEvals: true}

// Caps and defaults.
const (
	// MaxFileBytes is the largest file, as OpenAI's.
	MaxFileBytes = 512 << 20
	// MaxFilename bounds a file name, in bytes.
	MaxFilename = 255
	// MaxListLimit is the largest page of GET /v1/files, and its
	// default, as OpenAI's.
	MaxListLimit = 10000
	// MinExpiry and MaxExpiry bound expires_after[seconds] (one hour to
	// thirty days, as OpenAI's).
	MinExpiry = time.Hour
	MaxExpiry = 30 * 24 * time.Hour
	// BatchExpiry is when files of purposes batch and batch_output that
	// name no expiry expire, as OpenAI's; other files stay until deleted.
	BatchExpiry = 30 * 24 * time.Hour

	DefaultMaxPerKey           = 10000
	DefaultMaxKeyBytes         = 10 << 30
	DefaultMaxTotalBytes       = 100 << 30
	DefaultMaxUploads          = 8
	SweepInterval              = time.Minute
	sweepBatch                 = 1000
	partialAge                 = 24 * time.Hour
	multipartOverhead    int64 = 1 << 20 // the other fields and part headers of an upload
)

// Stored settings (the route store's settings table) that override the
// quota defaults: decimal numbers.
const (
	SettingMaxPerKey     = "files_max_per_key"     // files a key may hold; default DefaultMaxPerKey
	SettingMaxKeyBytes   = "files_max_key_bytes"   // bytes a key's files may take; default DefaultMaxKeyBytes
	SettingMaxTotalBytes = "files_max_total_bytes" // bytes every key's files may take; default DefaultMaxTotalBytes
)

// Settings reads the stored settings (the route store).
type Settings interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
}

// Quota is what a key's and every key's files may take.
type Quota struct {
	MaxPerKey     int   `json:"max_files_per_key"`
	MaxKeyBytes   int64 `json:"max_bytes_per_key"`
	MaxTotalBytes int64 `json:"max_total_bytes"`
}

// Options configure a Service.
type Options struct {
	Ops      feature.Operations // the gateway's key check and error shape (required for the routes)
	DB       *sqldb.DB          // the metadata (required)
	Storage  Storage            // the content (required)
	Settings Settings           // the quota overrides (nil: the defaults)
	// MaxFileBytes caps one file (0: MaxFileBytes; never more).
	MaxFileBytes int64
	// MaxUploads caps the uploads being written at once (0: DefaultMaxUploads).
	MaxUploads int
	Clock      clock.Clock
	Log        *slog.Logger
}

// Service is the Files API.
type Service struct {
	opt     Options
	meta    meta
	uploads chan struct{} // one token per upload being written
}

//go:embed migrations
var migrations embed.FS

// Migrations is the schema the module owns (product route_files).
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// New returns the service.
func New(opt Options) (*Service, error) {
	if opt.DB == nil || opt.Storage == nil {
		return nil, errors.New("files: DB and Storage are required")
	}
	if opt.MaxFileBytes <= 0 || opt.MaxFileBytes > MaxFileBytes {
		opt.MaxFileBytes = MaxFileBytes
	}
	if opt.MaxUploads <= 0 {
		opt.MaxUploads = DefaultMaxUploads
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{opt: opt, meta: meta{db: opt.DB}, uploads: make(chan struct{}, opt.MaxUploads)}, nil
}

// Module is the Files API as a gateway feature.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "files",
		Package:    "route/files",
		Routes:     s.Register,
		Admin:      func(a feature.Admin) { s.RegisterAdmin(a.Guarded) },
		Migrations: feature.Migrations{Product: "route_files", FS: Migrations()},
		Settings:   feature.Settings{Config: []string{"data", "route.files_s3"}, Stored: []string{SettingMaxPerKey, SettingMaxKeyBytes, SettingMaxTotalBytes}},
		Run:        s.Run,
	}
}

// Errors the service returns, in OpenAI's shape when they reach a client.
var (
	// ErrNotFound: the file is missing, expired or another key's.
	ErrNotFound = apiError(404, "not_found", "No such File object")
	// ErrTooLarge: the file passed the per-file cap.
	ErrTooLarge = apiError(413, "file_too_large", fmt.Sprintf("the file exceeds %d bytes", MaxFileBytes))
)

// Quota returns the quota in force: the stored settings over the defaults.
func (s *Service) Quota(ctx context.Context) (Quota, error) {
	q := Quota{MaxPerKey: DefaultMaxPerKey, MaxKeyBytes: DefaultMaxKeyBytes, MaxTotalBytes: DefaultMaxTotalBytes}
	if s.opt.Settings == nil {
		return q, nil
	}
	read := func(key string, dst *int64) error {
		v, ok, err := s.opt.Settings.Setting(ctx, key)
		if err != nil || !ok {
			return err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("files: setting %s is not a count: %q", key, v)
		}
		*dst = n
		return nil
	}
	n := int64(q.MaxPerKey)
	if err := errors.Join(read(SettingMaxPerKey, &n), read(SettingMaxKeyBytes, &q.MaxKeyBytes), read(SettingMaxTotalBytes, &q.MaxTotalBytes)); err != nil {
		return q, err
	}
	q.MaxPerKey = int(min(n, 1<<31-1))
	return q, nil
}

// SetQuota stores q as the quota in force.
func (s *Service) SetQuota(ctx context.Context, q Quota) error {
	if s.opt.Settings == nil {
		return errors.New("files: no settings store")
	}
	return errors.Join(s.opt.Settings.SetSetting(ctx, SettingMaxPerKey, strconv.Itoa(q.MaxPerKey)),
		s.opt.Settings.SetSetting(ctx, SettingMaxKeyBytes, strconv.FormatInt(q.MaxKeyBytes, 10)),
		s.opt.Settings.SetSetting(ctx, SettingMaxTotalBytes, strconv.FormatInt(q.MaxTotalBytes, 10)))
}

// newID returns a new file id: "file-" and 24 random bytes, base64url.
func newID() string { return auth.RandomToken("file-", 18) }

// checkFilename says what is wrong with a file name, if anything.
func checkFilename(name string) error {
	switch {
	case name == "":
		return invalid("file", "the file has no name")
	case len(name) > MaxFilename:
		return invalid("file", fmt.Sprintf("the file name exceeds %d bytes", MaxFilename))
	case !utf8.ValidString(name):
		return invalid("file", "the file name is not UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return invalid("file", "the file name has control characters")
		}
	}
	return nil
}

// capped reads r until more than n bytes come, then fails with tooBig
// (so that Storage.Put removes what it wrote).
type capped struct {
	r      io.Reader
	n      int64 // bytes still allowed
	tooBig error
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, c.tooBig
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n < 0 {
		return 0, c.tooBig
	}
	return k, err
}

// limitFor returns how many bytes a new file of owner may take, and the
// error for passing it: the per-file cap, or what is left of the quota
// when that is less.
func (s *Service) limitFor(ctx context.Context, owner string, now time.Time) (int64, error, error) {
	q, err := s.Quota(ctx)
	if err != nil {
		return 0, nil, err
	}
	n, used, err := s.meta.usage(ctx, owner, now)
	if err != nil {
		return 0, nil, err
	}
	if n >= q.MaxPerKey {
		return 0, nil, quotaError(fmt.Sprintf("the key holds %d files, the most it may (delete some first)", n))
	}
	limit, tooBig := s.opt.MaxFileBytes, error(apiError(413, "file_too_large", fmt.Sprintf("the file exceeds %d bytes", s.opt.MaxFileBytes)))
	if left := q.MaxKeyBytes - used; left < limit {
		limit, tooBig = max(left, 0), quotaError(fmt.Sprintf("the key's files would take more than %d bytes", q.MaxKeyBytes))
	}
	return limit, tooBig, nil
}

// store writes r as a new file of owner and records it; on failure
// nothing of it is left.
func (s *Service) store(ctx context.Context, f File, r io.Reader, limit int64, tooBig error) (File, error) {
	n, err := s.opt.Storage.Put(ctx, f.ID, &capped{r: r, n: limit, tooBig: tooBig})
	if err != nil {
		return File{}, err
	}
	f.Bytes = n
	return f, s.record(ctx, f)
}

// record inserts f's metadata under the quota; when it cannot, f's
// content is removed.
func (s *Service) record(ctx context.Context, f File) error {
	q, err := s.Quota(ctx)
	if err == nil {
		err = s.meta.insert(ctx, f, quota{MaxPerOwner: q.MaxPerKey, MaxOwnerBytes: q.MaxKeyBytes, MaxTotalBytes: q.MaxTotalBytes}, s.opt.Clock.Now())
	}
	if err != nil {
		if derr := s.opt.Storage.Delete(context.WithoutCancel(ctx), f.ID); derr != nil {
			s.opt.Log.Warn("removing the content of a file not recorded", "file", f.ID, "err", derr)
		}
		var qe *errQuota
		if errors.As(err, &qe) {
			return quotaError(qe.what)
		}
		return err
	}
	return nil
}

// expiry is when a file of purpose created at now expires when it names
// no expiry (zero: never).
func expiry(purpose string, now time.Time) time.Time {
	if purpose == PurposeBatch || purpose == PurposeBatchOutput {
		return now.Add(BatchExpiry)
	}
	return time.Time{}
}

// Put stores r as a new file of owner with purpose and filename and
// returns its id. It holds the caps of an upload: the per-file size, the
// name, the owner's and the gateway's quota.
func (s *Service) Put(ctx context.Context, owner, purpose, filename string, r io.Reader) (string, error) {
	if !uploadable[purpose] && purpose != PurposeBatchOutput {
		return "", invalid("purpose", fmt.Sprintf("unknown purpose %q", purpose))
	}
	if err := checkFilename(filename); err != nil {
		return "", err
	}
	now := s.opt.Clock.Now()
	limit, tooBig, err := s.limitFor(ctx, owner, now)
	if err != nil {
		return "", err
	}
	f, err := s.store(ctx, File{ID: newID(), Owner: owner, Purpose: purpose, Filename: filename, Created: now, Expires: expiry(purpose, now)},
		r, limit, tooBig)
	if err != nil {
		return "", err
	}
	return f.ID, nil
}

// Get returns owner's file id; ErrNotFound for a missing, expired or
// another owner's file.
func (s *Service) Get(ctx context.Context, owner, id string) (File, error) {
	f, err := s.meta.get(ctx, owner, id, s.opt.Clock.Now())
	if errors.Is(err, errNotFound) {
		return File{}, ErrNotFound
	}
	return f, err
}

// List returns a page of q.Owner's live files and whether more follow;
// a q.After that names no file of the owner is a 400.
func (s *Service) List(ctx context.Context, q ListQuery) ([]File, bool, error) {
	q.Limit = min(max(q.Limit, 1), MaxListLimit)
	fs, err := s.meta.list(ctx, q, s.opt.Clock.Now())
	if errors.Is(err, errNotFound) {
		return nil, false, invalid("after", "after names no file of this key")
	}
	if err != nil {
		return nil, false, err
	}
	if len(fs) > q.Limit {
		return fs[:q.Limit], true, nil
	}
	return fs, false, nil
}

// Open returns the content of owner's file id; an error for a missing,
// expired or another owner's file.
func (s *Service) Open(ctx context.Context, owner, id string) (io.ReadCloser, error) {
	_, rc, err := s.open(ctx, owner, id)
	return rc, err
}

func (s *Service) open(ctx context.Context, owner, id string) (File, io.ReadSeekCloser, error) {
	f, err := s.Get(ctx, owner, id)
	if err != nil {
		return File{}, nil, err
	}
	rc, err := s.opt.Storage.Open(ctx, f.ID)
	if errors.Is(err, ErrNoObject) {
		return File{}, nil, ErrNotFound // deleted since
	}
	return f, rc, err
}

// Delete removes owner's file id: ErrNotFound for a missing, expired or
// another owner's file.
func (s *Service) Delete(ctx context.Context, owner, id string) error {
	if _, err := s.Get(ctx, owner, id); err != nil {
		return err
	}
	ok, err := s.meta.remove(ctx, owner, id)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	// The file is gone for every caller now; content that could not be
	// removed is logged, not the client's failure.
	if err := s.opt.Storage.Delete(context.WithoutCancel(ctx), id); err != nil {
		s.opt.Log.Warn("removing the content of a deleted file", "file", id, "err", err)
	}
	return nil
}

// Sweep deletes the files expired by now (their content, then their
// metadata), at most sweepBatch at a time until none is left. It
// returns how many files it deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.opt.Clock.Now()
	n := 0
	for range 1000 { // bounded: at most a million files a sweep
		fs, err := s.meta.expired(ctx, now, sweepBatch)
		if err != nil {
			return n, err
		}
		if len(fs) == 0 {
			break
		}
		for _, f := range fs {
			if err := s.opt.Storage.Delete(ctx, f.ID); err != nil {
				return n, err
			}
			if _, err := s.meta.remove(ctx, f.Owner, f.ID); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// SweepOrphans removes, from a directory store, the temporary files of
// cut-off writes and the content that no file's metadata names, older
// than a day: what a crash while storing a file or before recording it
// left, or a delete whose content could not be removed. It returns how
// many objects it removed.
func (s *Service) SweepOrphans(ctx context.Context) (int, error) {
	d, ok := s.opt.Storage.(*Dir)
	if !ok {
		return 0, nil
	}
	now := s.opt.Clock.Now()
	if _, err := d.SweepPartial(now, partialAge); err != nil {
		return 0, err
	}
	n := 0
	err := d.Objects(now, partialAge, func(name string) error {
		known, err := s.meta.exists(ctx, name)
		if err != nil || known {
			return err
		}
		if err := d.Delete(ctx, name); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// OrphanInterval is how often Run looks for content no metadata names.
const OrphanInterval = 24 * time.Hour

// Run sweeps expired files at once and then every SweepInterval, and
// orphaned content at once and then every OrphanInterval, until ctx
// ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	var orphans time.Time
	for {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.opt.Log.Warn("sweeping expired files", "err", err)
		}
		if now := s.opt.Clock.Now(); now.Sub(orphans) >= OrphanInterval {
			orphans = now
			if _, err := s.SweepOrphans(ctx); err != nil && ctx.Err() == nil {
				s.opt.Log.Warn("sweeping orphaned file content", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
