package app

import "github.com/omniedge/omni/internal/route/provider"

func registerResponses(reg *provider.Registry) {}
