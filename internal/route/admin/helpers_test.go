package admin_test

import "github.com/omniedge/omni/internal/route/admin/admintest"

// What the tests share (route/admin/admintest), under short names.
type env = admintest.Env

const password = admintest.Password

var newEnv = admintest.NewEnv
