package batches

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the module's schema (product "route_batches"), one
// directory per dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_batches"

// The states of a line.
const (
	linePending = "pending"
	lineRunning = "running"
	lineDone    = "done"
)

// errNotFound is a batch that does not exist or is another key's.
var errNotFound = errors.New("batches: no such batch")

// Store keeps batches and their lines in SQL. Every change of state is
// one conditional UPDATE, so replicas sharing the database never both
// take the same batch phase or line.
type Store struct {
	db *sqldb.DB
}

// NewStore returns the store over db, whose schema Migrations holds.
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// record is a batch row. Times are Unix milliseconds, 0 for none.
type record struct {
	ID, KeyID, Endpoint, InputFileID, Window, Status string
	Metadata, Errors                                 string // JSON, "" for none
	OutputFileID, ErrorFileID                        string
	Total, Completed, Failed                         int
	CreatedAt, ExpiresAt                             int64
	InProgressAt, FinalizingAt, CompletedAt          int64
	FailedAt, ExpiredAt, CancellingAt, CancelledAt   int64
}

const recordCols = `id, key_id, endpoint, input_file_id, completion_window, status, metadata, errors,
	output_file_id, error_file_id, total, completed, failed, created_at, expires_at,
	in_progress_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at`

func scanRecord(s sqldb.Scanner) (record, error) {
	var r record
	var ts [7]sql.NullInt64
	err := s.Scan(&r.ID, &r.KeyID, &r.Endpoint, &r.InputFileID, &r.Window, &r.Status, &r.Metadata, &r.Errors,
		&r.OutputFileID, &r.ErrorFileID, &r.Total, &r.Completed, &r.Failed, &r.CreatedAt, &r.ExpiresAt,
		&ts[0], &ts[1], &ts[2], &ts[3], &ts[4], &ts[5], &ts[6])
	r.InProgressAt, r.FinalizingAt, r.CompletedAt = ts[0].Int64, ts[1].Int64, ts[2].Int64
	r.FailedAt, r.ExpiredAt, r.CancellingAt, r.CancelledAt = ts[3].Int64, ts[4].Int64, ts[5].Int64, ts[6].Int64
	return r, err
}

// active are the statuses of a batch that is not finished.
const activeStatuses = `('validating','in_progress','finalizing','cancelling')`

// create inserts b unless its key already has maxActive unfinished
// batches or maxStored batches in all (errActiveCap, errStoredCap).
func (s *Store) create(ctx context.Context, b record, maxActive, maxStored int) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_batches:"+b.KeyID); err != nil {
			return err
		}
		var active, stored int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN status IN `+activeStatuses+` THEN 1 ELSE 0 END), 0)
			FROM gateway_batches WHERE key_id = ?`, b.KeyID).Scan(&stored, &active); err != nil {
			return err
		}
		if active >= maxActive {
			return errActiveCap
		}
		if stored >= maxStored {
			return errStoredCap
		}
		_, err := tx.Exec(ctx, `INSERT INTO gateway_batches (id, key_id, endpoint, input_file_id, completion_window, status,
			metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.KeyID, b.Endpoint, b.InputFileID, b.Window, b.Status, b.Metadata, b.CreatedAt, b.ExpiresAt)
		return err
	})
}

var (
	errActiveCap = errors.New("batches: too many unfinished batches")
	errStoredCap = errors.New("batches: too many batches")
)

// get returns keyID's batch id.
func (s *Store) get(ctx context.Context, keyID, id string) (record, error) {
	r, err := scanRecord(s.db.QueryRow(ctx, `SELECT `+recordCols+` FROM gateway_batches WHERE id = ? AND key_id = ?`, id, keyID))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNotFound
	}
	return r, err
}

// list returns at most limit+1 of keyID's batches, newest first, after
// the batch after ("" from the newest).
func (s *Store) list(ctx context.Context, keyID, after string, limit int) ([]record, error) {
	q := `SELECT ` + recordCols + ` FROM gateway_batches WHERE key_id = ?`
	args := []any{keyID}
	if after != "" {
		a, err := s.get(ctx, keyID, after)
		if err != nil {
			return nil, err
		}
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, a.CreatedAt, a.CreatedAt, a.ID)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanRecord)
}

// cancel moves keyID's unfinished batch id to cancelling.
func (s *Store) cancel(ctx context.Context, keyID, id string, now int64) (record, error) {
	res, err := s.db.Exec(ctx, `UPDATE gateway_batches SET status = 'cancelling', cancelling_at = ?
		WHERE id = ? AND key_id = ? AND status IN ('validating','in_progress')`, now, id, keyID)
	if err != nil {
		return record{}, err
	}
	r, err := s.get(ctx, keyID, id)
	if err != nil {
		return r, err
	}
	if n, _ := res.RowsAffected(); n == 0 && r.Status != "cancelling" {
		return r, errNotCancellable
	}
	return r, nil
}

var (
	errNotCancellable = errors.New("batches: the batch is finished")
	errNotFinished    = errors.New("batches: the batch is not finished")
)

// remove deletes keyID's finished batch id.
func (s *Store) remove(ctx context.Context, keyID, id string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM gateway_batches WHERE id = ? AND key_id = ? AND status IN ('completed','failed','expired','cancelled')`, id, keyID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var status string
			if err := tx.QueryRow(ctx, `SELECT status FROM gateway_batches WHERE id = ? AND key_id = ?`, id, keyID).Scan(&status); errors.Is(err, sql.ErrNoRows) {
				return errNotFound
			} else if err != nil {
				return err
			}
			return errNotFinished
		}
		_, err = tx.Exec(ctx, `DELETE FROM gateway_batch_lines WHERE batch_id = ?`, id)
		return err
	})
}

// claimBatch takes the lease of a batch in status (validating or
// finalizing work) whose lease is free, for owner until until; "" when
// there is none.
func (s *Store) claimBatch(ctx context.Context, statuses, owner string, now, until int64) (record, bool, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM gateway_batches WHERE status IN `+statuses+` AND lease_until < ? ORDER BY created_at, id LIMIT 8`, now)
	if err != nil {
		return record{}, false, err
	}
	ids, err := sqldb.Collect(rows, func(s sqldb.Scanner) (string, error) { var id string; return id, s.Scan(&id) })
	if err != nil {
		return record{}, false, err
	}
	for _, id := range ids {
		res, err := s.db.Exec(ctx, `UPDATE gateway_batches SET lease_owner = ?, lease_until = ? WHERE id = ? AND status IN `+statuses+` AND lease_until < ?`,
			owner, until, id, now)
		if err != nil {
			return record{}, false, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			r, err := scanRecord(s.db.QueryRow(ctx, `SELECT `+recordCols+` FROM gateway_batches WHERE id = ?`, id))
			return r, err == nil, err
		}
	}
	return record{}, false, nil
}

// release gives up owner's lease of batch id.
func (s *Store) release(ctx context.Context, id, owner string) error {
	_, err := s.db.Exec(ctx, `UPDATE gateway_batches SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?`, id, owner)
	return err
}

// line is one input line as validated: a request to run, or (done) its
// error line already.
type line struct {
	N        int
	CustomID string
	Request  string // the body to send
	Done     bool
	Result   string // the error line of a line that is done
}

// addLines stores lines of batch id, which owner is validating, and
// extends owner's lease to until; first drops the lines an earlier,
// interrupted validation stored. It reports false when the batch left
// validating (cancelled, expired) or its lease is no longer owner's.
func (s *Store) addLines(ctx context.Context, id, owner string, lines []line, first bool, until int64) (bool, error) {
	var ok bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE gateway_batches SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'validating'`, until, id, owner)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ok = true
		if first {
			if _, err := tx.Exec(ctx, `DELETE FROM gateway_batch_lines WHERE batch_id = ?`, id); err != nil {
				return err
			}
		}
		for start := 0; start < len(lines); start += insertChunk {
			chunk := lines[start:min(len(lines), start+insertChunk)]
			var q strings.Builder
			q.WriteString(`INSERT INTO gateway_batch_lines (batch_id, line, custom_id, request, state, result) VALUES `)
			args := make([]any, 0, 6*len(chunk))
			for i, l := range chunk {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteString("(?, ?, ?, ?, ?, ?)")
				state := linePending
				if l.Done {
					state = lineDone
				}
				args = append(args, id, l.N, l.CustomID, l.Request, state, l.Result)
			}
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	return ok, err
}

// startLines ends owner's validation of batch id: in_progress with
// total lines of which failed are already done, or, when errs is not
// empty, failed with errs (its lines dropped).
func (s *Store) startLines(ctx context.Context, id, owner string, total, failed int, errs string, now int64) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var res sql.Result
		var err error
		if errs != "" {
			res, err = tx.Exec(ctx, `UPDATE gateway_batches SET status = 'failed', failed_at = ?, errors = ?, lease_owner = '', lease_until = 0
				WHERE id = ? AND lease_owner = ? AND status = 'validating'`, now, errs, id, owner)
		} else {
			res, err = tx.Exec(ctx, `UPDATE gateway_batches SET status = 'in_progress', in_progress_at = ?, total = ?, completed = 0, failed = ?,
				lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ? AND status = 'validating'`, now, total, failed, id, owner)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 && errs != "" {
			_, err = tx.Exec(ctx, `DELETE FROM gateway_batch_lines WHERE batch_id = ?`, id)
		}
		return err
	})
}

// insertChunk is how many lines one INSERT carries (6 parameters each,
// under SQLite's 32,766 and PostgreSQL's 65,535 parameters).
const insertChunk = 500

// inProgress lists the batches whose lines may be claimed.
func (s *Store) inProgress(ctx context.Context, limit int) ([]record, error) {
	rows, err := s.db.Query(ctx, `SELECT `+recordCols+` FROM gateway_batches WHERE status = 'in_progress' ORDER BY created_at, id LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanRecord)
}

// claimed is a line taken to be run.
type claimed struct {
	BatchID  string
	N        int
	CustomID string
	Request  string
}

// claimLines takes up to n pending lines of batch id for owner until
// until, atomically: a line is taken by one owner only, whatever the
// replicas.
func (s *Store) claimLines(ctx context.Context, id, owner string, n int, until int64) ([]claimed, error) {
	// PostgreSQL takes the lines in a CTE, evaluated once, skipping the
	// rows another replica's claim holds; SQLite's writers are serial.
	q := `UPDATE gateway_batch_lines SET state = 'running', lease_owner = ?, lease_until = ?
		WHERE batch_id = ? AND state = 'pending'
		AND EXISTS (SELECT 1 FROM gateway_batches WHERE id = ? AND status = 'in_progress') AND line IN (
			SELECT line FROM gateway_batch_lines WHERE batch_id = ? AND state = 'pending' ORDER BY line LIMIT ?)
		RETURNING line, custom_id, request`
	args := []any{owner, until, id, id, id, n}
	if s.db.Dialect == sqldb.Postgres {
		q = `WITH c AS (SELECT line FROM gateway_batch_lines WHERE batch_id = ? AND state = 'pending' ORDER BY line LIMIT ? FOR UPDATE SKIP LOCKED)
			UPDATE gateway_batch_lines l SET state = 'running', lease_owner = ?, lease_until = ? FROM c
			WHERE l.batch_id = ? AND l.line = c.line AND l.state = 'pending'
			AND EXISTS (SELECT 1 FROM gateway_batches WHERE id = ? AND status = 'in_progress')
			RETURNING l.line, l.custom_id, l.request`
		args = []any{id, n, owner, until, id, id}
	}
	var out []claimed
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = sqldb.Collect(rows, func(sc sqldb.Scanner) (claimed, error) {
			c := claimed{BatchID: id}
			return c, sc.Scan(&c.N, &c.CustomID, &c.Request)
		})
		return err
	})
	return out, err
}

// unclaim gives back owner's claimed lines that were not started.
func (s *Store) unclaim(ctx context.Context, owner string, cs []claimed) error {
	for _, c := range cs {
		if _, err := s.db.Exec(ctx, `UPDATE gateway_batch_lines SET state = 'pending', lease_owner = '', lease_until = 0
			WHERE batch_id = ? AND line = ? AND state = 'running' AND lease_owner = ?`, c.BatchID, c.N, owner); err != nil {
			return err
		}
	}
	return nil
}

// renew extends owner's leases of running lines to until.
func (s *Store) renew(ctx context.Context, owner string, until int64) error {
	_, err := s.db.Exec(ctx, `UPDATE gateway_batch_lines SET lease_until = ? WHERE state = 'running' AND lease_owner = ?`, until, owner)
	return err
}

// result is the outcome of a run line.
type result struct {
	BatchID string
	N       int
	OK      bool
	Line    string // the output or error file's line
}

// finish records results of owner's lines in one transaction, counting
// each in its batch once; a line no longer owner's (its lease was
// taken over) is left as it is. It reports whether one of the batches
// has no line left to run (it is ready to finalize).
func (s *Store) finish(ctx context.Context, owner string, rs []result) (bool, error) {
	var settled bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		settled = false
		type counts struct{ ok, failed int }
		per := map[string]*counts{}
		// One statement, parsed once, for every line of the flush.
		st, err := tx.Prepare(ctx, `UPDATE gateway_batch_lines SET state = 'done', ok = ?, result = ?, request = '', lease_owner = '', lease_until = 0
			WHERE batch_id = ? AND line = ? AND state = 'running' AND lease_owner = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rs {
			ok := 0
			if r.OK {
				ok = 1
			}
			res, err := st.ExecContext(ctx, ok, r.Line, r.BatchID, r.N, owner)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			c := per[r.BatchID]
			if c == nil {
				c = &counts{}
				per[r.BatchID] = c
			}
			if r.OK {
				c.ok++
			} else {
				c.failed++
			}
		}
		for id, c := range per {
			var left bool
			if err := tx.QueryRow(ctx, `UPDATE gateway_batches SET completed = completed + ?, failed = failed + ? WHERE id = ?
				RETURNING completed + failed < total`, c.ok, c.failed, id).Scan(&left); err != nil {
				return err
			}
			settled = settled || !left
		}
		return nil
	})
	return settled, err
}

// stale returns up to limit running lines of owners other than owner
// whose lease ended before now: their process stopped while they were
// in flight.
func (s *Store) stale(ctx context.Context, owner string, now int64, limit int) ([]claimed, error) {
	rows, err := s.db.Query(ctx, `SELECT batch_id, line, custom_id FROM gateway_batch_lines
		WHERE state = 'running' AND lease_until < ? AND lease_owner <> ? LIMIT ?`, now, owner, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(sc sqldb.Scanner) (claimed, error) {
		var c claimed
		return c, sc.Scan(&c.BatchID, &c.N, &c.CustomID)
	})
}

// interrupt records the error line of a stale line, unless it was
// finished or its lease renewed meanwhile.
func (s *Store) interrupt(ctx context.Context, c claimed, errLine string, now int64) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE gateway_batch_lines SET state = 'done', ok = 0, result = ?, request = '', lease_owner = '', lease_until = 0
			WHERE batch_id = ? AND line = ? AND state = 'running' AND lease_until < ?`, errLine, c.BatchID, c.N, now)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			_, err = tx.Exec(ctx, `UPDATE gateway_batches SET failed = failed + 1 WHERE id = ?`, c.BatchID)
		}
		return err
	})
}

// expire moves the unfinished batches whose window ended by now to
// finalizing, marking them expired; it returns how many.
func (s *Store) expire(ctx context.Context, now int64) (int64, error) {
	res, err := s.db.Exec(ctx, `UPDATE gateway_batches SET status = 'finalizing', finalizing_at = ?, expired_at = ?
		WHERE status IN ('validating','in_progress') AND expires_at <= ?`, now, now, now)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// settle moves in-progress batches without pending or running lines to
// finalizing.
func (s *Store) settle(ctx context.Context, now int64) error {
	_, err := s.db.Exec(ctx, `UPDATE gateway_batches SET status = 'finalizing', finalizing_at = ?
		WHERE status = 'in_progress' AND NOT EXISTS (
			SELECT 1 FROM gateway_batch_lines l WHERE l.batch_id = gateway_batches.id AND l.state IN ('pending','running'))`, now)
	return err
}

// running counts batch id's lines in flight.
func (s *Store) running(ctx context.Context, id string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_batch_lines WHERE batch_id = ? AND state = 'running'`, id).Scan(&n)
	return n, err
}

// pending returns up to limit of batch id's pending lines (an expired
// batch's, written as expired) after line after.
func (s *Store) pending(ctx context.Context, id string, after, limit int) ([]claimed, error) {
	rows, err := s.db.Query(ctx, `SELECT line, custom_id FROM gateway_batch_lines WHERE batch_id = ? AND state = 'pending' AND line > ? ORDER BY line LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(sc sqldb.Scanner) (claimed, error) {
		c := claimed{BatchID: id}
		return c, sc.Scan(&c.N, &c.CustomID)
	})
}

// results returns up to limit of batch id's finished lines with ok,
// after line after, in line order.
func (s *Store) results(ctx context.Context, id string, ok bool, after, limit int) ([]result, error) {
	o := 0
	if ok {
		o = 1
	}
	rows, err := s.db.Query(ctx, `SELECT line, result FROM gateway_batch_lines WHERE batch_id = ? AND state = 'done' AND ok = ? AND line > ? ORDER BY line LIMIT ?`, id, o, after, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(sc sqldb.Scanner) (result, error) {
		r := result{BatchID: id, OK: ok}
		return r, sc.Scan(&r.N, &r.Line)
	})
}

// finalize records batch id's files and final status (with failed
// lines added: an expired batch's unrun lines) and drops its lines, if
// owner still holds its lease.
func (s *Store) finalize(ctx context.Context, id, owner, status, outputID, errorID string, addFailed int, now int64) error {
	col := map[string]string{"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at"}[status]
	if col == "" {
		return fmt.Errorf("batches: no final status %q", status)
	}
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE gateway_batches SET status = ?, `+col+` = COALESCE(`+col+`, ?), output_file_id = ?, error_file_id = ?,
			failed = failed + ?, lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ? AND status IN ('finalizing','cancelling')`,
			status, now, outputID, errorID, addFailed, id, owner)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `DELETE FROM gateway_batch_lines WHERE batch_id = ?`, id)
		return err
	})
}

// marshalErrors renders a batch's errors object.
func marshalErrors(errs []batchError) string {
	if len(errs) == 0 {
		return ""
	}
	b, _ := json.Marshal(errorList{Object: "list", Data: errs})
	return string(b)
}
