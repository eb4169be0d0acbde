package router

import (
	"context"
	"net/http"
)

type filterKey struct{}

// Filter decides whether a request may use a target (a gateway key's
// allowed providers and models).
type Filter func(t Target) bool

// WithFilter restricts the targets the router tries for requests with
// ctx: targets f refuses are skipped, and a request none of whose targets
// is allowed fails with 403.
func WithFilter(ctx context.Context, f Filter) context.Context {
	if prev, ok := ctx.Value(filterKey{}).(Filter); ok {
		inner := f
		f = func(t Target) bool { return prev(t) && inner(t) }
	}
	return context.WithValue(ctx, filterKey{}, f)
}

// filterTargets drops the targets ctx's filter refuses, recording each as
// a 403 attempt.
func filterTargets(ctx context.Context, targets []Target) ([]Target, []Attempt) {
	f, ok := ctx.Value(filterKey{}).(Filter)
	if !ok {
		return targets, nil
	}
	var kept []Target
	var refused []Attempt
	for _, t := range targets {
		if f(t) {
			kept = append(kept, t)
			continue
		}
		refused = append(refused, Attempt{Provider: t.Provider, Model: t.Model, Status: http.StatusForbidden,
			Error: "not allowed for this API key"})
	}
	return kept, refused
}
