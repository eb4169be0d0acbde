package app

import "github.com/omniedge/omni/internal/route/provider"

func registerGemini(reg *provider.Registry) {}
