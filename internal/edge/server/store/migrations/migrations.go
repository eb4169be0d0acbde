// Package migrations holds the OmniEdge schema as embedded, append-only SQL
// files, one directory per dialect. Never edit or rename a file that has
// shipped; add a new, later-versioned file instead.
package migrations

import "embed"

// FS holds sqlite/*.sql and postgres/*.sql.
//
//go:embed sqlite/*.sql postgres/*.sql
var FS embed.FS
