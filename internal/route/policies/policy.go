package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The kinds of policy.
const (
	// KindKeyProviders: the keys listed may reach only the providers
	// listed.
	KindKeyProviders = "key_providers"
	// KindProviderAllowlist: no request is sent to a provider outside
	// the list.
	KindProviderAllowlist = "provider_allowlist"
	// KindModelBlock: the models matching the globs are never used,
	// whether named by the client or reached through an alias, a combo
	// or a mapping.
	KindModelBlock = "model_block"
)

// AllKeys in a policy's keys makes it apply to every request, with a
// gateway key or without one.
const AllKeys = "*"

// Caps.
const (
	MaxPolicies    = 256 // policies stored
	MaxEntries     = 256 // entries of each of keys, providers, models
	MaxName        = 128 // characters of a name
	MaxDescription = 500 // characters of a description
	MaxEntry       = 256 // characters of one key id, provider id or glob
)

// Policy is one routing policy.
type Policy struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Enabled     bool      `json:"enabled"`
	Kind        string    `json:"kind"`
	Keys        []string  `json:"keys"`
	Providers   []string  `json:"providers"`
	Models      []string  `json:"models"`
	Priority    int       `json:"priority"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// invalid is a policy that cannot be stored; Field names what is wrong.
type invalid struct {
	Field string
	Msg   string
}

func (e *invalid) Error() string { return fmt.Sprintf("%q %s", e.Field, e.Msg) }

func bad(field, format string, a ...any) error {
	return &invalid{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// validate checks p; known reports whether a provider id exists.
func (p *Policy) validate(known func(id string) bool) error {
	p.Name = strings.TrimSpace(p.Name)
	switch {
	case p.Name == "":
		return bad("name", "is required")
	case utf8.RuneCountInString(p.Name) > MaxName:
		return bad("name", "is longer than %d characters", MaxName)
	case hasControl(p.Name):
		return bad("name", "contains control characters")
	}
	if utf8.RuneCountInString(p.Description) > MaxDescription {
		return bad("description", "is longer than %d characters", MaxDescription)
	}
	if p.Priority < -1_000_000 || p.Priority > 1_000_000 {
		return bad("priority", "is outside -1000000..1000000")
	}
	for _, l := range []struct {
		field string
		list  []string
	}{{"keys", p.Keys}, {"providers", p.Providers}, {"models", p.Models}} {
		if len(l.list) > MaxEntries {
			return bad(l.field, "has more than %d entries", MaxEntries)
		}
		for i, v := range l.list {
			if v == "" || len(v) > MaxEntry || hasControl(v) || strings.TrimSpace(v) != v {
				return bad(fmt.Sprintf("%s[%d]", l.field, i), "must be 1 to %d characters without spaces around or control characters", MaxEntry)
			}
		}
	}
	for i, id := range p.Providers {
		if !known(id) {
			return bad(fmt.Sprintf("providers[%d]", i), "names provider %q, which does not exist", id)
		}
	}
	for i, g := range p.Models {
		if err := checkGlob(g); err != nil {
			return bad(fmt.Sprintf("models[%d]", i), "%s", err.Error())
		}
	}
	switch p.Kind {
	case KindKeyProviders:
		if len(p.Keys) == 0 {
			return bad("keys", "is required for kind %s (key ids, or \"*\" for every key)", p.Kind)
		}
		if len(p.Providers) == 0 {
			return bad("providers", "is required for kind %s", p.Kind)
		}
		if len(p.Models) > 0 {
			return bad("models", "is not used by kind %s", p.Kind)
		}
	case KindProviderAllowlist:
		if len(p.Providers) == 0 {
			return bad("providers", "is required for kind %s", p.Kind)
		}
		if len(p.Models) > 0 {
			return bad("models", "is not used by kind %s", p.Kind)
		}
	case KindModelBlock:
		if len(p.Models) == 0 {
			return bad("models", "is required for kind %s", p.Kind)
		}
		if len(p.Providers) > 0 {
			return bad("providers", "is not used by kind %s", p.Kind)
		}
	case "":
		return bad("kind", "is required (%s, %s or %s)", KindKeyProviders, KindProviderAllowlist, KindModelBlock)
	default:
		return bad("kind", "%q is not a policy kind (%s, %s or %s)", p.Kind, KindKeyProviders, KindProviderAllowlist, KindModelBlock)
	}
	p.Keys, p.Providers, p.Models = dedupe(p.Keys), dedupe(p.Providers), dedupe(p.Models)
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0 || !utf8.ValidString(s)
}

func dedupe(l []string) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// checkGlob accepts the globs Match understands: literal characters, *
// (any run, slashes included) and ? (one character).
func checkGlob(g string) error {
	if strings.ContainsAny(g, `[]\`) {
		return fmt.Errorf("glob %q uses [, ] or \\: only * and ? are wildcards", g)
	}
	return nil
}

// Match reports whether s matches glob g: * matches any run of
// characters (slashes included, so "*-preview" matches
// "nebius/org/x-preview"), ? one character, anything else itself.
func Match(g, s string) bool {
	// Iterative wildcard matching with one backtrack point.
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(g) && g[gi] == '*':
			star, mark = gi, si
			gi++
		case gi < len(g) && (g[gi] == '?' || g[gi] == s[si]):
			if g[gi] == '?' {
				// one character, not one byte
				_, n := utf8.DecodeRuneInString(s[si:])
				si += n
			} else {
				si++
			}
			gi++
		case star >= 0:
			gi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}
