package api

import "github.com/omniedge/omni/internal/route/router"

// targetName is t as "provider/model": the request's own model name when
// it names t already (no new string on the common direct path).
func targetName(asked string, t router.Target) string {
	if p, m, ok := router.SplitModel(asked); ok && p == t.Provider && m == t.Model {
		return asked
	}
	return t.String()
}
