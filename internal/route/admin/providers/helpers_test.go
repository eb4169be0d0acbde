package providers_test

import "github.com/omniedge/omni/internal/route/admin/admintest"

// What the tests share (route/admin/admintest), under short names.
type env = admintest.Env

var (
	newEnv      = admintest.NewEnv
	newUpstream = admintest.NewUpstream
	chat        = admintest.Chat
	contains    = admintest.Contains
)
