package webhooks

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the module's schema (product Product), one directory per
// dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_webhooks"

// The states of a delivery.
const (
	statusPending   = "pending"
	statusDelivered = "delivered"
	statusFailed    = "failed"
)

var (
	errNotFound = errors.New("webhooks: no such webhook")
	errTooMany  = errors.New("webhooks: too many webhooks")
)

// store keeps webhooks and their deliveries in SQL. Times are Unix
// milliseconds.
type store struct {
	db *sqldb.DB
}

// hookRow is a webhook as stored (its secret sealed).
type hookRow struct {
	ID, URL, Secret, SecretPrefix, Description string
	Events                                     []string
	CreatedAt, UpdatedAt                       int64
}

const hookCols = `id, url, events, secret, secret_prefix, description, created_at, updated_at`

func scanHook(s sqldb.Scanner) (hookRow, error) {
	var h hookRow
	var evs string
	if err := s.Scan(&h.ID, &h.URL, &evs, &h.Secret, &h.SecretPrefix, &h.Description, &h.CreatedAt, &h.UpdatedAt); err != nil {
		return h, err
	}
	return h, json.Unmarshal([]byte(evs), &h.Events)
}

func eventsJSON(evs []string) string {
	b, _ := json.Marshal(evs)
	return string(b)
}

func (s *store) hooks(ctx context.Context) ([]hookRow, error) {
	rows, err := s.db.Query(ctx, `SELECT `+hookCols+` FROM gateway_webhooks ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanHook)
}

func (s *store) hook(ctx context.Context, id string) (hookRow, error) {
	h, err := scanHook(s.db.QueryRow(ctx, `SELECT `+hookCols+` FROM gateway_webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return h, errNotFound
	}
	return h, err
}

// create inserts h unless there are max webhooks already.
func (s *store) create(ctx context.Context, h hookRow, max int) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_webhooks"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_webhooks`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return errTooMany
		}
		_, err := tx.Exec(ctx, `INSERT INTO gateway_webhooks (`+hookCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			h.ID, h.URL, eventsJSON(h.Events), h.Secret, h.SecretPrefix, h.Description, h.CreatedAt, h.UpdatedAt)
		return err
	})
}

func (s *store) update(ctx context.Context, h hookRow) error {
	res, err := s.db.Exec(ctx, `UPDATE gateway_webhooks SET url = ?, events = ?, secret = ?, secret_prefix = ?, description = ?, updated_at = ? WHERE id = ?`,
		h.URL, eventsJSON(h.Events), h.Secret, h.SecretPrefix, h.Description, h.UpdatedAt, h.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// remove deletes webhook id and its deliveries.
func (s *store) remove(ctx context.Context, id string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM gateway_webhooks WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM gateway_webhook_deliveries WHERE webhook_id = ?`, id)
		return err
	})
}

// delivery is one event to deliver to one webhook.
type delivery struct {
	ID, WebhookID, Event, Payload, Status, LastError string
	Attempts, LastStatus                             int
	NextAt, CreatedAt, UpdatedAt                     int64
}

const deliveryCols = `id, webhook_id, event, payload, status, attempts, next_at, last_error, last_status, created_at, updated_at`

func scanDelivery(s sqldb.Scanner) (delivery, error) {
	var d delivery
	err := s.Scan(&d.ID, &d.WebhookID, &d.Event, &d.Payload, &d.Status, &d.Attempts, &d.NextAt, &d.LastError, &d.LastStatus, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

// insertChunk bounds the rows of one INSERT (PostgreSQL allows 65535
// parameters; SQLite 32766).
const insertChunk = 200

// enqueue inserts ds (pending) in one transaction unless maxPending
// deliveries are pending already; it returns how many it inserted.
func (s *store) enqueue(ctx context.Context, ds []delivery, maxPending int) (int, error) {
	inserted := 0
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		inserted = 0
		var pending int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_webhook_deliveries WHERE status = 'pending'`).Scan(&pending); err != nil {
			return err
		}
		room := max(maxPending-pending, 0)
		ds := ds[:min(len(ds), room)]
		for start := 0; start < len(ds); start += insertChunk {
			chunk := ds[start:min(len(ds), start+insertChunk)]
			var q strings.Builder
			q.WriteString(`INSERT INTO gateway_webhook_deliveries (id, webhook_id, event, payload, status, attempts, next_at, created_at, updated_at) VALUES `)
			args := make([]any, 0, 9*len(chunk))
			for i, d := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, 'pending', 0, ?, ?, ?)")
				args = append(args, d.ID, d.WebhookID, d.Event, d.Payload, d.NextAt, d.CreatedAt, d.CreatedAt)
			}
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		inserted = len(ds)
		return nil
	})
	return inserted, err
}

// claim leases at most n pending deliveries due at now to owner until
// until. Two replicas never hold the same delivery: the lease is taken by
// one conditional UPDATE (skipping rows another replica is claiming on
// PostgreSQL).
func (s *store) claim(ctx context.Context, owner string, now, until int64, n int) ([]delivery, error) {
	sub := `SELECT id FROM gateway_webhook_deliveries WHERE status = 'pending' AND next_at <= ? AND lease_until < ? ORDER BY next_at LIMIT ?`
	if s.db.Dialect == sqldb.Postgres {
		sub += ` FOR UPDATE SKIP LOCKED`
	}
	var out []delivery
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE gateway_webhook_deliveries SET lease_owner = ?, lease_until = ?
			WHERE id IN (`+sub+`) AND status = 'pending' AND lease_until < ? RETURNING `+deliveryCols,
			owner, until, now, now, n, now)
		if err != nil {
			return err
		}
		out, err = sqldb.Collect(rows, scanDelivery)
		return err
	})
	return out, err
}

// finish records an attempt of delivery d that owner holds: its new
// status, attempts, next attempt and outcome; the lease is released.
func (s *store) finish(ctx context.Context, d delivery, owner string, now int64) error {
	_, err := s.db.Exec(ctx, `UPDATE gateway_webhook_deliveries SET status = ?, attempts = ?, next_at = ?, last_error = ?, last_status = ?,
		updated_at = ?, lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?`,
		d.Status, d.Attempts, d.NextAt, d.LastError, d.LastStatus, now, d.ID, owner)
	return err
}

// deliveries returns at most limit+1 of webhook id's deliveries, newest
// first, after delivery after ("" from the newest).
func (s *store) deliveries(ctx context.Context, id, after string, limit int) ([]delivery, error) {
	q := `SELECT ` + deliveryCols + ` FROM gateway_webhook_deliveries WHERE webhook_id = ?`
	args := []any{id}
	if after != "" {
		var at int64
		err := s.db.QueryRow(ctx, `SELECT created_at FROM gateway_webhook_deliveries WHERE id = ? AND webhook_id = ?`, after, id).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errNoDelivery
		} else if err != nil {
			return nil, err
		}
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, at, at, after)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanDelivery)
}

var errNoDelivery = errors.New("webhooks: no such delivery")

// sweep deletes delivered and failed deliveries last changed before
// before.
func (s *store) sweep(ctx context.Context, before int64) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM gateway_webhook_deliveries WHERE status IN ('delivered','failed') AND updated_at < ?`, before)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
