package a2a

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The built-in skills.
const (
	SkillSmartRouting      = "smart-routing"
	SkillQuotaManagement   = "quota-management"
	SkillProviderDiscovery = "provider-discovery"
	SkillCostAnalysis      = "cost-analysis"
	SkillHealthReport      = "health-report"
)

// Model is a model the gateway routes.
type Model struct {
	ID       string `json:"id"`
	Provider string `json:"provider"` // who owns it ("combo", "alias" for those)
	Kind     string `json:"kind"`     // chat, embedding, image, combo, alias …
}

// Provider is a configured provider, without its address or secrets.
type Provider struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Enabled bool   `json:"enabled"`
	Active  bool   `json:"active"` // it has connections in the routing table
	Source  string `json:"source"` // config or stored
}

// Sources are what the skills read of the gateway's state; route/app
// fills them from the modules. A nil source makes its skill fail with a
// clear message.
type Sources struct {
	// Models lists every model the gateway routes.
	Models func() []Model
	// Providers lists the configured providers.
	Providers func(ctx context.Context) ([]Provider, error)
	// Resolve lists the "provider/model" targets a model name is routed to.
	Resolve func(model string) ([]string, error)
	// Permits returns the refusal when the gateway key of the request
	// whose context is ctx may not use model (feature.ModelPolicy).
	Permits func(ctx context.Context, model string) error
	// Available reports whether a provider's breaker lets requests
	// through.
	Available func(provider string) bool
	// Quota is the key's policy, rate limits and budget status.
	Quota func(ctx context.Context, keyID string) (any, error)
	// Usage is the key's usage and cost in [since, until) ("" keyID: the
	// whole gateway's).
	Usage func(ctx context.Context, keyID string, since, until time.Time) (any, error)
	// Health is the providers' breakers, the connections' cooldowns and
	// the models' lockouts.
	Health func(ctx context.Context) (any, error)
}

// SkillInfo describes a skill in the agent card.
type SkillInfo struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Examples    []string `json:"examples"`
	InputModes  []string `json:"inputModes"`
	OutputModes []string `json:"outputModes"`
}

var modes = []string{"text/plain", "application/json"}

// Skills are the built-in skills, in the order the agent card lists them.
var Skills = []SkillInfo{
	{ID: SkillSmartRouting, Name: "Smart routing",
		Description: `Picks the model for a task through the gateway's routing state (a "model" hint in a data part or metadata is checked against the key's policy and the providers' health); with "execute": true it also runs the task as a chat through the gateway as the calling key.`,
		Tags:        []string{"routing", "models"}, Examples: []string{"Route this coding task", `{"model":"openai/gpt-4o","execute":true}`}, InputModes: modes, OutputModes: modes},
	{ID: SkillQuotaManagement, Name: "Quota management",
		Description: "The calling key's policy (allowed models and providers), rate limits and budget status.",
		Tags:        []string{"quota", "budget", "limits"}, Examples: []string{"How much budget do I have left?"}, InputModes: modes, OutputModes: modes},
	{ID: SkillProviderDiscovery, Name: "Provider discovery",
		Description: "The configured providers and the models the calling key may use, with their kinds.",
		Tags:        []string{"providers", "models"}, Examples: []string{"Which providers and models are available?"}, InputModes: modes, OutputModes: modes},
	{ID: SkillCostAnalysis, Name: "Cost analysis",
		Description: `The calling key's usage and cost over a window ("window": "1h", "24h", "7d" or "30d"; default 24h), by model and provider.`,
		Tags:        []string{"usage", "cost"}, Examples: []string{"What did I spend in the last 7 days?", `{"window":"7d"}`}, InputModes: modes, OutputModes: modes},
	{ID: SkillHealthReport, Name: "Health report",
		Description: "The providers' circuit breakers, the connections' cooldowns and the models' lockouts.",
		Tags:        []string{"health", "resilience"}, Examples: []string{"Are any providers down?"}, InputModes: modes, OutputModes: modes},
}

func knownSkill(id string) bool {
	return slices.ContainsFunc(Skills, func(s SkillInfo) bool { return s.ID == id })
}

// guessSkill picks the skill a message names none for from its words.
func guessSkill(text string) string {
	t := strings.ToLower(text)
	has := func(words ...string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(t, w) })
	}
	switch {
	case has("quota", "budget", "rate limit", "limits"):
		return SkillQuotaManagement
	case has("cost", "spend", "spent", "usage"):
		return SkillCostAnalysis
	case has("health", "breaker", "cooldown", "outage", " down"):
		return SkillHealthReport
	case has("provider", "which models", "list models", "available models"):
		return SkillProviderDiscovery
	}
	return SkillSmartRouting
}

// input is what a skill is asked: the message's text, its data parts
// and metadata merged (later ones win), and the caller.
type input struct {
	keyID string
	text  string
	data  map[string]any
}

func (in input) str(name string) string {
	s, _ := in.data[name].(string)
	return s
}

func (in input) flag(name string) bool {
	switch v := in.data[name].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// failure is a skill's error whose message the client may read.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, a ...any) error { return &failure{fmt.Sprintf(format, a...)} }

// run runs skill for in and returns its artifacts.
func (s *Service) runSkill(ctx context.Context, skill string, in input) ([]Artifact, error) {
	switch skill {
	case SkillSmartRouting:
		return s.smartRouting(ctx, in)
	case SkillQuotaManagement:
		if s.src.Quota == nil {
			return nil, failf("quotas are not available on this gateway (it has no store)")
		}
		q, err := s.src.Quota(ctx, in.keyID)
		if err != nil {
			return nil, err
		}
		return []Artifact{dataArtifact("quota", "The calling key's policy, rate limits and budget", q)}, nil
	case SkillProviderDiscovery:
		return s.providerDiscovery(ctx)
	case SkillCostAnalysis:
		return s.costAnalysis(ctx, in)
	case SkillHealthReport:
		if s.src.Health == nil {
			return nil, failf("provider health is not available on this gateway")
		}
		h, err := s.src.Health(ctx)
		if err != nil {
			return nil, err
		}
		return []Artifact{dataArtifact("health", "Breakers, cooldowns and lockouts", h)}, nil
	}
	return nil, failf("unknown skill %q", skill)
}

func dataArtifact(name, desc string, v any) Artifact {
	return Artifact{ArtifactID: newID("art_"), Name: name, Description: desc, Parts: []Part{{Kind: "data", Data: v}}}
}

// permittedModels lists the models the caller may use, by id.
func (s *Service) permittedModels(ctx context.Context) []Model {
	if s.src.Models == nil {
		return nil
	}
	var out []Model
	for _, m := range s.src.Models() {
		if s.src.Permits == nil || s.src.Permits(ctx, m.ID) == nil {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Model) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (s *Service) providerDiscovery(ctx context.Context) ([]Artifact, error) {
	if s.src.Providers == nil {
		return nil, failf("providers are not available on this gateway")
	}
	ps, err := s.src.Providers(ctx)
	if err != nil {
		return nil, err
	}
	models := s.permittedModels(ctx)
	type providerOut struct {
		Provider
		Models []Model  `json:"models"`
		Kinds  []string `json:"kinds"`
	}
	out := []providerOut{}
	for _, p := range ps {
		po := providerOut{Provider: p, Models: []Model{}, Kinds: []string{}}
		for _, m := range models {
			if m.Provider == p.ID {
				po.Models = append(po.Models, m)
				if !slices.Contains(po.Kinds, m.Kind) {
					po.Kinds = append(po.Kinds, m.Kind)
				}
			}
		}
		// A provider the key can reach no model of stays hidden from it.
		if len(po.Models) > 0 || (s.src.Permits != nil && s.src.Permits(ctx, p.ID+"/*") == nil) {
			out = append(out, po)
		}
	}
	routed := []Model{}
	for _, m := range models {
		if !slices.ContainsFunc(ps, func(p Provider) bool { return p.ID == m.Provider }) {
			routed = append(routed, m) // combos and aliases
		}
	}
	return []Artifact{dataArtifact("providers", "Providers and the models the calling key may use",
		map[string]any{"providers": out, "combosAndAliases": routed, "modelCount": len(models)})}, nil
}

// windows are the windows cost-analysis accepts.
var windows = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

func (s *Service) costAnalysis(ctx context.Context, in input) ([]Artifact, error) {
	if s.src.Usage == nil {
		return nil, failf("usage is not available on this gateway (it has no store)")
	}
	w := in.str("window")
	if w == "" {
		w = "24h"
	}
	d, ok := windows[w]
	if !ok {
		return nil, failf(`"window" must be one of 1h, 24h, 7d, 30d`)
	}
	until := s.clk.Now()
	since := until.Add(-d)
	u, err := s.src.Usage(ctx, in.keyID, since, until)
	if err != nil {
		return nil, err
	}
	return []Artifact{dataArtifact("cost", "Usage and cost of the calling key over the window", map[string]any{
		"window": w, "since": stamp(since), "until": stamp(until), "usage": u})}, nil
}

// maxAnswer bounds the gateway's answer smart-routing keeps.
const maxAnswer = 64 << 10

// candidate is a model smart-routing weighs.
type candidate struct {
	Model   string   `json:"model"`
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
	Healthy bool     `json:"healthy"`
	score   int
}

func (s *Service) smartRouting(ctx context.Context, in input) ([]Artifact, error) {
	if s.src.Models == nil || s.src.Resolve == nil {
		return nil, failf("the routing state is not available")
	}
	var cands []candidate
	reason := ""
	if hint := in.str("model"); hint != "" {
		if s.src.Permits != nil {
			if err := s.src.Permits(ctx, hint); err != nil {
				return nil, failf("this key may not use model %q", hint)
			}
		}
		c, err := s.weigh(hint, "")
		if err != nil {
			return nil, failf("model %q is not routable: %v", hint, err)
		}
		cands, reason = []candidate{c}, "the model hint"
	} else {
		kind := wantedKind(in.text)
		words := keywords(in.text)
		for _, m := range s.permittedModels(ctx) {
			if m.Kind != kind && !(kind == "chat" && (m.Kind == "combo" || m.Kind == "alias")) {
				continue
			}
			c, err := s.weigh(m.ID, m.Kind)
			if err != nil {
				continue
			}
			id := strings.ToLower(m.ID)
			for _, w := range words {
				if strings.Contains(id, w) {
					c.score++
				}
			}
			cands = append(cands, c)
			if len(cands) >= 1000 {
				break
			}
		}
		if len(cands) == 0 {
			return nil, failf("no %s model this key may use is routable", kind)
		}
		slices.SortStableFunc(cands, func(a, b candidate) int {
			if a.Healthy != b.Healthy {
				if a.Healthy {
					return -1
				}
				return 1
			}
			return b.score - a.score
		})
		reason = fmt.Sprintf("a %s model this key may use, healthy providers first, then the best match of the task's words", kind)
	}
	best := cands[0]
	alts := cands[1:min(len(cands), 6)]
	decision := map[string]any{"model": best.Model, "kind": best.Kind, "targets": best.Targets, "healthy": best.Healthy,
		"reason": reason, "alternatives": alts}
	out := []Artifact{dataArtifact("routing-decision", "The model chosen for the task", decision)}
	if !in.flag("execute") {
		return out, nil
	}
	ans, err := s.chat(ctx, in, best.Model)
	if err != nil {
		return nil, err
	}
	return append(out, ans), nil
}

// weigh resolves model and checks its targets' health.
func (s *Service) weigh(model, kind string) (candidate, error) {
	ts, err := s.src.Resolve(model)
	if err != nil {
		return candidate{}, err
	}
	c := candidate{Model: model, Kind: kind, Targets: ts}
	for _, t := range ts {
		p, _, _ := strings.Cut(t, "/")
		if s.src.Available == nil || s.src.Available(p) {
			c.Healthy = true
		}
	}
	if len(c.Targets) > 20 {
		c.Targets = c.Targets[:20]
	}
	return c, nil
}

func wantedKind(text string) string {
	t := strings.ToLower(text)
	switch {
	case strings.Contains(t, "embedding") || strings.Contains(t, "embed "):
		return "embedding"
	case strings.Contains(t, "generate an image") || strings.Contains(t, "image generation") || strings.Contains(t, "draw "):
		return "image"
	}
	return "chat"
}

// keywords are the task's words a model id may contain (at most 32).
func keywords(text string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if len(w) >= 3 && !slices.Contains(out, w) {
			out = append(out, w)
			if w == "coding" || w == "code" {
				out = append(out, "coder", "code")
			}
		}
		if len(out) >= 32 {
			break
		}
	}
	return out
}

// chat runs the task's text as a chat with model through the gateway as
// the caller's key.
func (s *Service) chat(ctx context.Context, in input, model string) (Artifact, error) {
	if s.disp == nil {
		return Artifact{}, failf("running tasks is not available on this gateway")
	}
	if strings.TrimSpace(in.text) == "" {
		return Artifact{}, failf("the message has no text to run")
	}
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": in.text}}})
	d, err := s.disp.Dispatch(ctx, in.keyID, http.MethodPost, "/v1/chat/completions", body, maxAnswer)
	if err != nil {
		return Artifact{}, err
	}
	if d.Status != http.StatusOK || d.Truncated {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(d.Body, &e)
		msg := e.Error.Message
		if len(msg) > 500 {
			msg = msg[:500]
		}
		if d.Truncated {
			msg = "the answer is longer than " + strconv.Itoa(maxAnswer) + " bytes"
		}
		return Artifact{}, failf("the gateway answered %d: %s (request %s)", d.Status, msg, d.RequestID)
	}
	var res struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage json.RawMessage `json:"usage"`
	}
	if err := json.Unmarshal(d.Body, &res); err != nil || len(res.Choices) == 0 {
		return Artifact{}, errors.Join(errors.New("a2a: the chat answer is not a chat completion"), err)
	}
	return Artifact{ArtifactID: newID("art_"), Name: "answer", Description: "The answer of the chosen model",
		Parts: []Part{{Kind: "text", Text: res.Choices[0].Message.Content},
			{Kind: "data", Data: map[string]any{"model": model, "upstreamModel": res.Model, "requestId": d.RequestID, "usage": res.Usage}}}}, nil
}
