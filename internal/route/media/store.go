package media

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the schema of the jobs table (product route_media), one
// directory per dialect.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Kind is what a job generates.
type Kind string

// The kinds of job.
const (
	Video Kind = "video"
	Music Kind = "music"
)

// Status is where a job is, in the Videos API's words.
type Status string

// The statuses of a job; queued and in_progress are active.
const (
	Queued     Status = "queued"
	InProgress Status = "in_progress"
	Completed  Status = "completed"
	Failed     Status = "failed"
)

// Job is one generation a gateway key asked for. Times are Unix
// milliseconds.
type Job struct {
	ID     string
	Kind   Kind
	KeyID  string // the gateway key that created it; only it sees the job
	Model  string // as the client named it
	Prompt string
	// Seconds is the length of the output asked for (what was charged).
	Seconds int
	Size    string

	// The target that accepted the job and the upstream's id of it; all
	// empty until the submit succeeded.
	Provider, Connection, UpstreamModel, UpstreamID string

	Status   Status
	Progress int // 0 to 100
	// ErrorCode and ErrorMessage say why a failed job failed.
	ErrorCode, ErrorMessage string
	// ContentURL is where the upstream keeps the output when it gives a
	// URL (Runway, Replicate); empty when the content is fetched by id.
	ContentURL string

	CreatedAt, CompletedAt, ExpiresAt int64
	// NextPollAt is when the upstream may be asked again.
	NextPollAt int64
}

// Active reports a job the upstream is still working on.
func (j *Job) Active() bool { return j.Status == Queued || j.Status == InProgress }

// ErrNotFound is a job that does not exist, has expired, is of another
// kind or belongs to another key: the same answer for all of them.
var ErrNotFound = errors.New("media: no such job")

// ErrTooMany is a key at its cap of active jobs.
var ErrTooMany = errors.New("media: too many jobs in progress")

// Store keeps the jobs in the gateway_media_jobs table.
type Store struct{ db *sqldb.DB }

// NewStore returns the jobs of db (migrated with Migrations).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

const columns = `id, kind, key_id, model, prompt, seconds, size, provider, connection, upstream_model, upstream_id,
	status, progress, error_code, error_message, content_url, created_at, completed_at, expires_at, next_poll_at`

func scan(r sqldb.Scanner) (*Job, error) {
	var j Job
	err := r.Scan(&j.ID, &j.Kind, &j.KeyID, &j.Model, &j.Prompt, &j.Seconds, &j.Size, &j.Provider, &j.Connection,
		&j.UpstreamModel, &j.UpstreamID, &j.Status, &j.Progress, &j.ErrorCode, &j.ErrorMessage, &j.ContentURL,
		&j.CreatedAt, &j.CompletedAt, &j.ExpiresAt, &j.NextPollAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &j, err
}

// Reserve inserts j, queued, unless its key already has max active jobs
// that have not expired at now (ErrTooMany). Concurrent reservations of
// one key are serialised, so the cap holds under races.
func (s *Store) Reserve(ctx context.Context, j *Job, max int, now int64) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "route_media:"+j.KeyID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_media_jobs WHERE key_id = ? AND status IN ('queued', 'in_progress') AND expires_at > ?`,
			j.KeyID, now).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrTooMany
		}
		_, err := tx.Exec(ctx, `INSERT INTO gateway_media_jobs (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Kind, j.KeyID, j.Model, j.Prompt, j.Seconds, j.Size, j.Provider, j.Connection, j.UpstreamModel, j.UpstreamID,
			j.Status, j.Progress, j.ErrorCode, j.ErrorMessage, j.ContentURL, j.CreatedAt, j.CompletedAt, j.ExpiresAt, j.NextPollAt)
		return err
	})
}

// Delete removes a job (a reservation whose submit failed).
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM gateway_media_jobs WHERE id = ?`, id)
	return err
}

// Save writes what may change of j: the target, the upstream's id, the
// status, progress, error, content URL and poll time.
func (s *Store) Save(ctx context.Context, j *Job) error {
	_, err := s.db.Exec(ctx, `UPDATE gateway_media_jobs SET provider = ?, connection = ?, upstream_model = ?, upstream_id = ?,
		status = ?, progress = ?, error_code = ?, error_message = ?, content_url = ?, completed_at = ?, next_poll_at = ? WHERE id = ?`,
		j.Provider, j.Connection, j.UpstreamModel, j.UpstreamID, j.Status, j.Progress, j.ErrorCode, j.ErrorMessage, j.ContentURL,
		j.CompletedAt, j.NextPollAt, j.ID)
	return err
}

// Get returns the job id of kind that keyID created, ErrNotFound when
// there is none or it expired at now.
func (s *Store) Get(ctx context.Context, kind Kind, keyID, id string, now int64) (*Job, error) {
	return scan(s.db.QueryRow(ctx, `SELECT `+columns+` FROM gateway_media_jobs WHERE id = ? AND kind = ? AND key_id = ? AND expires_at > ?`,
		id, kind, keyID, now))
}

// Claim takes the next poll of an active job whose poll was due at due:
// it moves the poll time to next and reports whether this caller won
// (replicas and concurrent readers poll a job once per interval).
func (s *Store) Claim(ctx context.Context, id string, due, next int64) (bool, error) {
	res, err := s.db.Exec(ctx, `UPDATE gateway_media_jobs SET next_poll_at = ? WHERE id = ? AND next_poll_at = ? AND status IN ('queued', 'in_progress')`,
		next, id, due)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Due lists at most limit active, submitted, unexpired jobs whose poll
// is due at now, the longest waiting first.
func (s *Store) Due(ctx context.Context, now int64, limit int) ([]*Job, error) {
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM gateway_media_jobs
		WHERE status IN ('queued', 'in_progress') AND upstream_id <> '' AND next_poll_at <= ? AND expires_at > ?
		ORDER BY next_poll_at LIMIT ?`, now, now, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scan)
}

// Sweep deletes the jobs that expired at now and reports how many.
func (s *Store) Sweep(ctx context.Context, now int64) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM gateway_media_jobs WHERE expires_at <= ?`, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
