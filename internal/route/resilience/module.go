package resilience

import "github.com/omniedge/omni/internal/route/feature"

// Module is the tracker as a gateway feature: the router's health (it
// consults the tracker before every attempt), /api/resilience… and
// /api/rate-limit(s), its stored settings, and the loop that follows
// other replicas' breaker trips and cooldowns (with Redis).
func (t *Tracker) Module() feature.Module {
	return feature.Module{
		Name:     "resilience",
		Package:  "route/resilience",
		Admin:    func(a feature.Admin) { t.Register(a.Guarded) },
		Stage:    feature.Stage{Health: t},
		Settings: feature.Settings{Config: []string{"redis", "redis_prefix"}, Stored: []string{SettingKey}},
		Run:      t.Run,
	}
}
