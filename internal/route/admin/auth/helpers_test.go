package auth_test

import "github.com/omniedge/omni/internal/route/admin/admintest"

// What the tests share (route/admin/admintest), under short names.
type env = admintest.Env

const password = admintest.Password

var (
	masterKey = admintest.MasterKey
	newEnv    = admintest.NewEnv
	newEnvLog = admintest.NewEnvLog
	remote    = admintest.Remote
)
