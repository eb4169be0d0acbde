package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// Backups from the Settings page: one is created and listed; the
// database is downloaded through the page's link; that file, imported
// through the page's file input, puts the gateway back as it was when it
// was downloaded.
func TestBackupCreateDownloadImport(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "before-download"})
	p := browser.New(t).Page(t, 1280, 900)
	openLoggedIn(p, e, "settings")

	p.WaitText("#backups-list", "No backups yet")
	p.Click("#backup-create")
	p.WaitText("#backup-feedback", "Created")
	p.WaitText("#backups-list", "manual")

	// Download: the link's file, as the browser gets it.
	got := browser.Eval[map[string]any](p, `(async () => {
		const a = document.getElementById("backup-download");
		const r = await fetch(a.href);
		const b = new Uint8Array(await r.arrayBuffer());
		window.downloaded = new File([b], "omni-export.sqlite", {type: "application/octet-stream"});
		return {status: r.status, download: a.hasAttribute("download"), disposition: r.headers.get("Content-Disposition") || "",
			magic: new TextDecoder().decode(b.slice(0, 15)), size: b.length};
	})()`)
	if got["status"] != float64(200) || got["download"] != true || !strings.HasPrefix(got["disposition"].(string), "attachment") ||
		got["magic"] != "SQLite format 3" {
		t.Fatalf("the download link gave %v", got)
	}

	// A change after the download, which the import takes back.
	e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "after-download"})
	p.Eval(`(() => { const dt = new DataTransfer(); dt.items.add(window.downloaded);
		const f = document.getElementById("import-file"); f.files = dt.files; f.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
	p.Click("#import-submit")
	p.WaitVisible("dialog[open]")
	p.Screenshot("import-confirm")
	p.Click("dialog[open] button[value=ok]")
	p.WaitText("#import-feedback", "Imported omni-export.sqlite")
	p.Screenshot("backups")
	keys := string(e.Want(http.StatusOK, "GET", "/api/keys", nil).Body)
	if !strings.Contains(keys, "before-download") || strings.Contains(keys, "after-download") {
		t.Fatalf("keys after importing the download: %s", keys)
	}
	// The page still works on the imported state.
	p.Click("#nav-keys")
	p.WaitText("#keys-list", "before-download")
}
