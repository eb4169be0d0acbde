// Package usagestore owns the gateway's usage records in SQL: the
// route_usage table (one row per routed request, written in batches by
// route/usage), its hourly sums (route_usage_hourly) kept in the same
// transactions, and the reads of the usage endpoints (logs, totals,
// buckets, latency samples, sessions). route/store embeds its Table, so
// the gateway reaches it through *store.Store.
package usagestore

import (
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Table reads and writes usage records; its schema is migrated by
// route/store.
type Table struct {
	db *sqldb.DB
}

// New returns the usage table of db.
func New(db *sqldb.DB) *Table { return &Table{db: db} }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// scanner is a row being read (sqldb.Scanner).
type scanner = sqldb.Scanner
