package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadBuildInfo(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/omniedge/omni", Version: "v0.0.0-20261205-abcdef"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abcdef0123"}, {Key: "vcs.time", Value: "2026-12-05T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	bi := readBuildInfo(stamped)
	if bi.Version != "v0.0.0-20261205-abcdef" || bi.Revision != "abcdef0123" || !bi.Modified || bi.Module != "github.com/omniedge/omni" {
		t.Fatalf("build info %+v", bi)
	}
	if s := bi.String(); !strings.Contains(s, "abcdef0123, modified") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("printed %q", s)
	}
	if bi := readBuildInfo(func() (*debug.BuildInfo, bool) { return nil, false }); bi.Version != Version || bi.Revision != "" {
		t.Fatalf("without build info: %+v", bi)
	}
}

// TestVersionOfBuiltBinary builds omni from this work tree and checks
// that `omni version --json` names the VCS revision git has.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git work tree: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "omni")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "github.com/omniedge/omni/cmd/omni").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var bi buildInfo
	if err := json.Unmarshal(out, &bi); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if bi.Revision != strings.TrimSpace(string(rev)) || bi.Module != "github.com/omniedge/omni" || bi.GoVersion == "" {
		t.Fatalf("version of the built binary %+v, want revision %s", bi, rev)
	}
	plain, _ := exec.Command(bin, "version").Output()
	if !strings.HasPrefix(string(plain), "omni ") || !strings.Contains(string(plain), bi.Revision) {
		t.Fatalf("plain version %q", plain)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	if code, out, errs := run(t, "healthcheck", "--url", srv.URL+"/healthz"); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("healthy server: %d %q %q", code, out, errs)
	}
	status = http.StatusServiceUnavailable
	if code, _, errs := run(t, "healthcheck", "--url", srv.URL+"/healthz"); code != 1 || !strings.Contains(errs, "503") {
		t.Fatalf("failing server: %d %q", code, errs)
	}
	srv.Close()
	if code, _, _ := run(t, "healthcheck", "--url", srv.URL+"/healthz", "--timeout", "1s"); code != 1 {
		t.Fatalf("closed server: exit %d, want 1", code)
	}
	if code, _, _ := run(t, "healthcheck", "--url", "::bad"); code != 2 {
		t.Fatalf("bad url: exit %d, want 2", code)
	}
}
