package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// A provider's models are listed and hidden, its base URL edited (the
// stored key kept) and the provider deleted from the Providers page.
func TestProviderModelsEditDelete(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	up, moved := newUpstream(t), newUpstream(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "fake", "type": "openai-compatible",
		"base_url": up.URL, "api_key": upstreamSecret, "models": []string{"m1", "m2"}})

	p := browser.New(t).Page(t, 1280, 900)
	p.Navigate(e.Srv.URL + "/dashboard/")
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.WaitText("#providers-list", "fake")

	p.Click(`button[aria-label="Models of fake"]`)
	p.Click(`input[aria-label="Show m2"]`)
	p.WaitText("#providers-list", "m2")
	for i := 0; ; i++ {
		if strings.Contains(string(e.Want(http.StatusOK, "GET", "/api/provider-models?provider=fake", nil).Body), `"hidden":true`) {
			break
		}
		if i > 50 {
			t.Fatal("hiding m2 on the page did not hide it")
		}
		p.Eval(`new Promise(r => setTimeout(r, 100))`)
	}

	p.Click(`button[aria-label="Edit fake"]`)
	p.SetValue(`#providers-list form input[name=base_url]`, moved.URL)
	p.Click(`#providers-list form button[type=submit]`)
	p.WaitText("#providers-list", moved.URL)
	if b := string(e.Want(http.StatusOK, "GET", "/api/providers/fake", nil).Body); !strings.Contains(b, `"connections":1`) {
		t.Fatalf("the stored key was not kept: %s", b)
	}
	p.Screenshot("provider-edited")

	p.Click(`button[aria-label="Delete fake"]`)
	p.Click("dialog[open] button[value=ok]")
	p.WaitText("#providers-list", "No providers yet")
	e.Want(http.StatusNotFound, "GET", "/api/providers/fake", nil)
}
