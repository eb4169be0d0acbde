package store

import (
	"context"
	"fmt"
)

// UsageGroup is the sum of the records of one provider, model or key.
type UsageGroup struct {
	Key string `json:"key"`
	UsageTotals
}

// usageGroupColumns are the columns records can be grouped by.
var usageGroupColumns = map[string]string{"provider": "provider", "model": "model", "key": "key_id"}

// UsageGroups sums the records matching f per provider, model (as the
// client named it) or key ("provider", "model", "key"), most requests
// first, at most limit groups.
func (s *Store) UsageGroups(ctx context.Context, f UsageFilter, by string, limit int) ([]UsageGroup, error) {
	col, ok := usageGroupColumns[by]
	if !ok {
		return nil, fmt.Errorf("usage groups: cannot group by %q", by)
	}
	where, args := f.where()
	args = append(args, limit)
	rows, err := s.db.Query(ctx, `SELECT `+col+`, `+totalsColumns+` FROM route_usage`+where+
		` GROUP BY `+col+` ORDER BY 2 DESC, 1 LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(sc scanner) (UsageGroup, error) {
		var g UsageGroup
		t, err := scanTotals(sc, &g.Key)
		g.UsageTotals = t
		return g, err
	})
}
