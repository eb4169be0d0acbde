package pricing_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestPricing(t *testing.T) {
	exp, cheap := newUpstream(t, "expensive"), newUpstream(t, "cheap")
	e := newEnv(t, nil)
	e.Login()
	// The router orders cost-optimized combos by these prices.
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pa", "type": "openai", "base_url": exp.URL})
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pb", "type": "openai", "base_url": cheap.URL})
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "thrifty", "strategy": "cost-optimized", "targets": []string{"pa/claude-opus-4-1", "pb/gpt-4o-mini"}})
	if got := e.ChatText("thrifty"); got != "hi from cheap" {
		t.Fatalf("cost-optimized combo went to %q", got)
	}
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "pb/*", "input": 500, "output": 500})
	if got := e.ChatText("thrifty"); got != "hi from expensive" {
		t.Fatalf("after the override the combo went to %q", got)
	}

	v := e.Want(http.StatusOK, "GET", "/api/pricing?model=openai/gpt-4o", nil).Object(t)
	if v["input"] != 2.5 || v["output"] != 10.0 || v["source"] != "builtin" {
		t.Fatalf("built-in price = %v", v)
	}
	if all := e.Want(http.StatusOK, "GET", "/api/pricing", nil); !strings.Contains(string(all.Body), `"claude-sonnet-4*"`) {
		t.Fatalf("pricing list = %s", all.Body)
	}
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "gpt-4o", "input": 1, "output": 2, "cache_read": 0.5})
	v = e.Want(http.StatusOK, "GET", "/api/pricing?model=openai/gpt-4o", nil).Object(t)
	if v["input"] != 1.0 || v["output"] != 2.0 || v["cache_read"] != 0.5 || v["source"] != "override" {
		t.Fatalf("overridden price = %v", v)
	}
	// A provider-qualified override wins for that provider only.
	e.Want(http.StatusOK, "POST", "/api/pricing", map[string]any{"model": "cheap/*", "input": 0.01, "output": 0.02})
	if v := e.Want(http.StatusOK, "GET", "/api/pricing?model=cheap/gpt-4o", nil).Object(t); v["input"] != 0.01 {
		t.Fatalf("provider override = %v", v)
	}
	e.WantError(http.StatusNotFound, "GET", "/api/pricing?model=unknown-model-x", nil)
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "input": -1, "output": 1})
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "input": 1})
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "[", "input": 1, "output": 1})
	e.Want(http.StatusNoContent, "DELETE", "/api/pricing?pattern=gpt-4o", nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/pricing?pattern=gpt-4o", nil)
	if v := e.Want(http.StatusOK, "GET", "/api/pricing?model=gpt-4o", nil).Object(t); v["source"] != "builtin" {
		t.Fatalf("after delete = %v", v)
	}
}

// A modality beyond chat is priced in its own unit, per the unit's
// scale, which the list names.
func TestUnitPrices(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	v := e.Want(http.StatusOK, "GET", "/api/pricing?model=cohere/rerank-v3.5", nil).Object(t)
	if v["unit"] != "search_unit" || v["unit_price"] != 0.002 || v["unit_per"] != 1.0 {
		t.Fatalf("built-in rerank price = %v", v)
	}
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "my-reranker", "unit": "document", "unit_price": 0.5})
	v = e.Want(http.StatusOK, "GET", "/api/pricing?model=x/my-reranker", nil).Object(t)
	if v["unit"] != "document" || v["unit_price"] != 0.5 || v["unit_per"] != 1000.0 || v["input"] != 0.0 || v["source"] != "override" {
		t.Fatalf("unit price override = %v", v)
	}
	all := e.Want(http.StatusOK, "GET", "/api/pricing", nil).Object(t)
	if u, _ := all["units"].(map[string]any); u["document"] != 1000.0 || u["image"] != 1.0 {
		t.Fatalf("units = %v", all["units"])
	}
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "unit": "parsec", "unit_price": 1})
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "unit": "document"})
	e.WantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "unit": "document", "unit_price": -1})
}

func TestBadInputIs4xx(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	cases := []struct {
		status       int
		method, path string
		body         any
	}{
		{400, "DELETE", "/api/pricing", nil},
	}
	for _, c := range cases {
		e.WantError(c.status, c.method, c.path, c.body)
	}
}
