package usagestore

import (
	"context"
	"fmt"
)

// UsageGroup is the sum of the records of one provider, model or key.
type UsageGroup struct {
	Key string `json:"key"`
	UsageTotals
}

// UsageGroups sums the records matching f per "provider", "model" (as
// the client named it) or "key", most requests first, at most limit.
func (t *Table) UsageGroups(ctx context.Context, f UsageFilter, by string, limit int) ([]UsageGroup, error) {
	col, ok := map[string]string{"provider": "provider", "model": "model", "key": "key_id"}[by]
	if !ok {
		return nil, fmt.Errorf("usage groups: cannot group by %q", by)
	}
	where, args := f.where()
	rows, err := t.db.Query(ctx, `SELECT `+col+`, `+sumColumns+` FROM route_usage`+where+
		` GROUP BY `+col+` ORDER BY 2 DESC, 1 LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(sc scanner) (g UsageGroup, err error) {
		sum, err := scanSums(sc, &g.Key)
		g.UsageTotals = sum.totals()
		return g, err
	})
}
