package search_test

import (
	"net/http"
	"testing"
)

// A self-hosted SearXNG needs no key: the provider is configured without
// one and its requests carry no Authorization header.
func TestSearchSearXNGWithoutKey(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "searxng")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "sx", "type": "searxng", "base_url": u.URL})
	a := decodeAnswer(t, e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "q", "provider": "sx"}).Body)
	if len(a.Results) != 2 || u.last(t).header.Get("Authorization") != "" {
		t.Fatalf("answer %+v, auth %q", a, u.last(t).header.Get("Authorization"))
	}
	// SearXNG has no default address.
	e.WantError(http.StatusBadRequest, "POST", "/api/providers", map[string]any{"id": "sx2", "type": "searxng"})
}
