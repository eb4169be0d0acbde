package keys_test

import "github.com/omniedge/omni/internal/route/admin/admintest"

// What the tests share (route/admin/admintest), under short names.
var (
	newEnv = admintest.NewEnv
	bearer = admintest.Bearer
)
