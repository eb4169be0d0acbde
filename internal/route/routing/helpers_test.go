package routing_test

import "github.com/omniedge/omni/internal/route/admin/admintest"

// What the tests share (route/admin/admintest), under short names.
var (
	masterKey   = admintest.MasterKey
	newEnv      = admintest.NewEnv
	newUpstream = admintest.NewUpstream
)
