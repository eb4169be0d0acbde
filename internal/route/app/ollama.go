package app

import "github.com/omniedge/omni/internal/route/provider"

func registerOllama(reg *provider.Registry) {}
