package sqldb

import "database/sql"

// Scanner is what a row-scanning function reads from: *sql.Row or
// *sql.Rows.
type Scanner = interface{ Scan(...any) error }

// Collect reads every row of rows with scan, in order, and closes rows.
func Collect[T any](rows *sql.Rows, scan func(Scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
