package files

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// File is one stored file's metadata.
type File struct {
	ID       string
	Owner    string // the gateway key's id ("" for a keyless local client)
	Purpose  string
	Filename string
	Bytes    int64
	Created  time.Time
	Expires  time.Time // zero: never
}

// meta keeps the files' metadata in the module's table gateway_files.
type meta struct {
	db *sqldb.DB
}

const fileColumns = "id, owner, purpose, filename, bytes, created_at, expires_at"

func scanFile(s sqldb.Scanner) (File, error) {
	var f File
	var created int64
	var expires sql.NullInt64
	if err := s.Scan(&f.ID, &f.Owner, &f.Purpose, &f.Filename, &f.Bytes, &created, &expires); err != nil {
		return File{}, err
	}
	f.Created = time.UnixMilli(created)
	if expires.Valid {
		f.Expires = time.UnixMilli(expires.Int64)
	}
	return f, nil
}

func expiresArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// quota is what insert checks under one lock before adding a file.
type quota struct {
	MaxPerOwner   int
	MaxOwnerBytes int64
	MaxTotalBytes int64
}

// errQuota is insert's error when a cap would be passed; what names it.
type errQuota struct{ what string }

func (e *errQuota) Error() string { return "files: " + e.what }

// insert adds f unless the owner's count or bytes, or every owner's
// bytes, would pass q (counting files not yet swept but expired at now
// as gone).
func (m *meta) insert(ctx context.Context, f File, q quota, now time.Time) error {
	return m.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "omni.gateway_files"); err != nil {
			return err
		}
		live := "(expires_at IS NULL OR expires_at > ?)"
		var n int
		var ob, tb sql.NullInt64
		if err := tx.QueryRow(ctx, "SELECT COUNT(*), SUM(bytes) FROM gateway_files WHERE owner = ? AND "+live,
			f.Owner, now.UnixMilli()).Scan(&n, &ob); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT SUM(bytes) FROM gateway_files WHERE "+live, now.UnixMilli()).Scan(&tb); err != nil {
			return err
		}
		switch {
		case n+1 > q.MaxPerOwner:
			return &errQuota{fmt.Sprintf("the key holds %d files, the most it may", n)}
		case ob.Int64+f.Bytes > q.MaxOwnerBytes:
			return &errQuota{fmt.Sprintf("the key's files would take more than %d bytes", q.MaxOwnerBytes)}
		case tb.Int64+f.Bytes > q.MaxTotalBytes:
			return &errQuota{fmt.Sprintf("the gateway's files would take more than %d bytes", q.MaxTotalBytes)}
		}
		_, err := tx.Exec(ctx, "INSERT INTO gateway_files ("+fileColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
			f.ID, f.Owner, f.Purpose, f.Filename, f.Bytes, f.Created.UnixMilli(), expiresArg(f.Expires))
		return err
	})
}

// usage returns the owner's live file count and bytes at now.
func (m *meta) usage(ctx context.Context, owner string, now time.Time) (int, int64, error) {
	var n int
	var b sql.NullInt64
	err := m.db.QueryRow(ctx, "SELECT COUNT(*), SUM(bytes) FROM gateway_files WHERE owner = ? AND (expires_at IS NULL OR expires_at > ?)",
		owner, now.UnixMilli()).Scan(&n, &b)
	return n, b.Int64, err
}

// errNotFound is get's error for a file that is missing, expired at now
// or another owner's: the three look alike to the caller.
var errNotFound = errors.New("files: no such file")

// get returns owner's live file id.
func (m *meta) get(ctx context.Context, owner, id string, now time.Time) (File, error) {
	f, err := scanFile(m.db.QueryRow(ctx, "SELECT "+fileColumns+" FROM gateway_files WHERE id = ? AND owner = ? AND (expires_at IS NULL OR expires_at > ?)",
		id, owner, now.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, errNotFound
	}
	return f, err
}

// ListQuery is a page of an owner's files.
type ListQuery struct {
	Owner   string
	Purpose string // "": every purpose
	Limit   int    // 1 to MaxListLimit
	Asc     bool   // oldest first (else newest first)
	After   string // a file id of the owner: the page starts past it
}

// list returns up to q.Limit+1 of the owner's live files in created
// order (then id), starting past q.After; the extra one says there are
// more.
func (m *meta) list(ctx context.Context, q ListQuery, now time.Time) ([]File, error) {
	where := "owner = ? AND (expires_at IS NULL OR expires_at > ?)"
	args := []any{q.Owner, now.UnixMilli()}
	if q.Purpose != "" {
		where += " AND purpose = ?"
		args = append(args, q.Purpose)
	}
	cmp, dir := "<", "DESC"
	if q.Asc {
		cmp, dir = ">", "ASC"
	}
	if q.After != "" {
		var created int64
		err := m.db.QueryRow(ctx, "SELECT created_at FROM gateway_files WHERE id = ? AND owner = ?", q.After, q.Owner).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errNotFound
		}
		if err != nil {
			return nil, err
		}
		where += " AND (created_at " + cmp + " ? OR (created_at = ? AND id " + cmp + " ?))"
		args = append(args, created, created, q.After)
	}
	args = append(args, q.Limit+1)
	rows, err := m.db.Query(ctx, "SELECT "+fileColumns+" FROM gateway_files WHERE "+where+
		" ORDER BY created_at "+dir+", id "+dir+" LIMIT ?", args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanFile)
}

// remove deletes owner's file id and reports whether there was one.
func (m *meta) remove(ctx context.Context, owner, id string) (bool, error) {
	res, err := m.db.Exec(ctx, "DELETE FROM gateway_files WHERE id = ? AND owner = ?", id, owner)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// expired returns up to limit files expired at now.
func (m *meta) expired(ctx context.Context, now time.Time, limit int) ([]File, error) {
	rows, err := m.db.Query(ctx, "SELECT "+fileColumns+" FROM gateway_files WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?",
		now.UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanFile)
}

// exists reports whether any owner has a file id (expired or not).
func (m *meta) exists(ctx context.Context, id string) (bool, error) {
	var n int
	err := m.db.QueryRow(ctx, "SELECT COUNT(*) FROM gateway_files WHERE id = ?", id).Scan(&n)
	return n > 0, err
}
