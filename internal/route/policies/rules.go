package policies

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// rules are the enabled policies, in the order they are judged (higher
// priority first, then by name): the first that refuses a target is the
// one a refusal names.
type rules []*Policy

// compile returns the enabled policies of ps in judging order.
func compile(ps []Policy) rules {
	var rs rules
	for i := range ps {
		if ps[i].Enabled {
			p := ps[i]
			rs = append(rs, &p)
		}
	}
	slices.SortStableFunc(rs, func(a, b *Policy) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return rs
}

// appliesTo reports whether p applies to requests made with the gateway
// key keyID ("" for a request without a key): a policy without keys
// applies to all, "*" too.
func (p *Policy) appliesTo(keyID string) bool {
	if len(p.Keys) == 0 {
		return true
	}
	for _, k := range p.Keys {
		if k == AllKeys || keyID != "" && k == keyID {
			return true
		}
	}
	return false
}

// global reports whether p applies to every request.
func (p *Policy) global() bool { return len(p.Keys) == 0 || slices.Contains(p.Keys, AllKeys) }

// forKey returns the rules that apply to requests with keyID.
func (rs rules) forKey(keyID string) rules {
	var out rules
	for _, p := range rs {
		if p.appliesTo(keyID) {
			out = append(out, p)
		}
	}
	return out
}

// globals returns the rules that apply to every request.
func (rs rules) globals() rules {
	var out rules
	for _, p := range rs {
		if p.global() {
			out = append(out, p)
		}
	}
	return out
}

// blocksName returns the model_block policy whose globs match the name
// a client asked for, nil when none does.
func (rs rules) blocksName(model string) *Policy {
	for _, p := range rs {
		if p.Kind == KindModelBlock && matchAny(p.Models, model) {
			return p
		}
	}
	return nil
}

// refuses returns the first policy that forbids target t, nil when t is
// allowed.
func (rs rules) refuses(t router.Target) *Policy {
	for _, p := range rs {
		switch p.Kind {
		case KindKeyProviders, KindProviderAllowlist:
			if !slices.Contains(p.Providers, t.Provider) {
				return p
			}
		case KindModelBlock:
			if matchAny(p.Models, t.Model) || matchAny(p.Models, t.String()) {
				return p
			}
		}
	}
	return nil
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if Match(g, s) {
			return true
		}
	}
	return false
}

// judge decides a call for model, whose targets (as the routing table
// resolves it now) are targets: the refusal when the name is blocked or
// every target is forbidden, else the filter the router applies to the
// targets it tries (nil when no rule applies).
func (rs rules) judge(model string, targets []router.Target) (router.Filter, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	if p := rs.blocksName(model); p != nil {
		return nil, refusal("model %s is blocked by routing policy %q (%s)", model, p.Name, p.ID)
	}
	var first *Policy
	kept := 0
	for _, t := range targets {
		if p := rs.refuses(t); p == nil {
			kept++
		} else if first == nil {
			first = p
		}
	}
	if len(targets) > 0 && kept == 0 {
		what := "is blocked by"
		if first.Kind != KindModelBlock {
			what = "is served only by providers forbidden by"
		}
		return nil, refusal("model %s %s routing policy %q (%s)", model, what, first.Name, first.ID)
	}
	return func(t router.Target) bool { return rs.refuses(t) == nil }, nil
}

// refusal is the 403 a call refused by a policy gets, in every dialect's shape.
func refusal(format string, a ...any) error {
	return &llm.Error{Status: http.StatusForbidden, Type: llm.ErrPermission, Code: "policy_forbidden",
		Message: strings.TrimSpace(fmt.Sprintf(format, a...))}
}
