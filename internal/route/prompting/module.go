package prompting

import "github.com/omniedge/omni/internal/route/feature"

// Module is the feature module: the management routes, the rewriter
// installed in the pipeline, the stored settings it reads and its
// loop following other replicas' changes.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:     "prompting",
		Package:  "route/prompting",
		Admin:    func(a feature.Admin) { s.Register(a.Guarded) },
		Stage:    feature.Stage{Rewrite: s},
		Settings: feature.Settings{Stored: []string{SettingSystemPrompt, SettingThinkingBudget}},
		Init:     s.Load,
		Run:      s.Run,
		Lifetime: feature.Detached,
	}
}
