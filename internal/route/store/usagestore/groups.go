package usagestore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// UsageGroup is the sum of the records of one provider, model or key.
type UsageGroup struct {
	Key string `json:"key"`
	UsageTotals
}

// groupDims are the breakdowns: the records' column, and the dimension
// of the hourly sums that holds them.
var groupDims = map[string]struct{ col, dim string }{
	"provider": {"provider", dimProvider},
	"model":    {"model", dimClientModel},
	"key":      {"key_id", dimKey},
	"modality": {"modality", dimModality},
	"unit":     {"unit", dimUnit},
}

// UsageGroups sums the records matching f per "provider", "model" (as
// the client named it) or "key", most requests first (then by key, in
// byte order), at most limit.
//
// Whole hours come from the hourly sums, the partial hours at the ends
// of the period from the records: unfiltered, the hours of one dimension
// of route_usage_hourly grouped by value; filtered by provider, model or
// key, the rows of route_usage_hourly_detail that match, grouped by the
// column (a filter on the breakdown's own provider or key alone is one
// group, the filter's totals). Other filters (connection, session,
// cursor) read the records.
func (t *Table) UsageGroups(ctx context.Context, f UsageFilter, by string, limit int) ([]UsageGroup, error) {
	g, ok := groupDims[by]
	if !ok {
		return nil, fmt.Errorf("usage groups: cannot group by %q", by)
	}
	if val, ok := f.ownGroup(by); ok {
		tot, err := t.UsageTotals(ctx, f)
		if err != nil || tot.Requests == 0 {
			return nil, err
		}
		return []UsageGroup{{Key: val, UsageTotals: tot}}, nil
	}
	spans := []usageSpan{{f: f}}
	if f.detailOK() {
		spans = usageSpans(f)
	}
	sums := newGroupSums(maxGroupValues)
	for _, sp := range spans {
		var q string
		var args []any
		switch {
		case sp.hourly && f.periodOnly():
			q = `SELECT val, ` + hourlySumColumns + ` FROM route_usage_hourly WHERE dim = ? AND hour >= ?`
			args = []any{g.dim, sp.from}
			if sp.to != 0 {
				q += ` AND hour < ?`
				args = append(args, sp.to)
			}
			q += ` GROUP BY val`
		case sp.hourly:
			var where string
			where, args = detailWhere(f, sp.from, sp.to)
			q = `SELECT ` + g.col + `, ` + hourlySumColumns + ` FROM route_usage_hourly_detail` + where + ` GROUP BY ` + g.col
		default:
			var where string
			where, args = sp.recordsWhere()
			q = `SELECT ` + g.col + `, ` + sumColumns + ` FROM route_usage` + where + ` GROUP BY ` + g.col
		}
		rows, err := t.db.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		// Row by row: a period may hold as many values as clients sent
		// (model names are theirs), and only the sums are kept.
		for rows.Next() {
			var key string
			s, err := scanSums(rows, &key)
			if err != nil {
				rows.Close()
				return nil, err
			}
			sums.add(key, s)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]UsageGroup, 0, len(sums.m))
	for k, s := range sums.m {
		if s.t.Requests > 0 && (k != "" || by != "unit") { // chat uses no unit
			out = append(out, UsageGroup{Key: k, UsageTotals: s.totals()})
		}
	}
	slices.SortFunc(out, func(a, b UsageGroup) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), strings.Compare(a.Key, b.Key))
	})
	return out[:min(len(out), max(limit, 0))], nil
}

// periodOnly reports whether f selects records by time alone.
func (f UsageFilter) periodOnly() bool {
	return f.Model == "" && f.Provider == "" && f.KeyID == "" && f.Connection == "" && f.Session == "" && f.Modality == "" && f.Before == 0
}

// ownGroup reports whether f filters on the breakdown's own provider or
// key and nothing else but the period: its records are one group, val.
func (f UsageFilter) ownGroup(by string) (val string, ok bool) {
	g := f
	switch by {
	case "provider":
		val, g.Provider = f.Provider, ""
	case "key":
		val, g.KeyID = f.KeyID, ""
	}
	return val, val != "" && g.periodOnly()
}

// maxGroupValues bounds the distinct values a breakdown sums at once.
// Model names are the clients' own, so a key holder could fill a period
// with millions of them; past the bound, the sums of values not yet seen
// go to the one group OtherGroups (the totals stay exact, the ranking
// of the values folded there is lost).
const maxGroupValues = 100_000

// OtherGroups names the group of a breakdown that holds the values past
// maxGroupValues.
const OtherGroups = "(other values)"

// groupSums is a breakdown's sums per value, at most max values and
// OtherGroups.
type groupSums struct {
	m   map[string]*usageSum
	max int
}

func newGroupSums(max int) *groupSums { return &groupSums{m: map[string]*usageSum{}, max: max} }

func (g *groupSums) add(key string, s usageSum) {
	if cur := g.m[key]; cur != nil {
		cur.add(s)
		return
	}
	if len(g.m) >= g.max {
		key = OtherGroups
		if cur := g.m[key]; cur != nil {
			cur.add(s)
			return
		}
	}
	g.m[key] = &s
}
