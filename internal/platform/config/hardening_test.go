package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Anonymous gateway access from anywhere needs an explicit opt-in:
// REQUIRE_API_KEY=false (any source), or --allow-anonymous. Unset, the
// gateway serves anonymous requests from its own host only.
func TestAnonymousAccessIsExplicit(t *testing.T) {
	for _, c := range []struct {
		name       string
		args       []string
		env        map[string]string
		yaml       string
		require    bool
		allowAnyIP bool
	}{
		{name: "unset"},
		{name: "REQUIRE_API_KEY=true", env: map[string]string{"REQUIRE_API_KEY": "true"}, require: true},
		{name: "REQUIRE_API_KEY=false", env: map[string]string{"REQUIRE_API_KEY": "false"}, allowAnyIP: true},
		{name: "OMNI_REQUIRE_API_KEY=0", env: map[string]string{"OMNI_REQUIRE_API_KEY": "0"}, allowAnyIP: true},
		{name: "flag false", args: []string{"--require-api-key=false"}, allowAnyIP: true},
		{name: "flag over env", args: []string{"--require-api-key=true"}, env: map[string]string{"REQUIRE_API_KEY": "false"}, require: true},
		{name: "env over yaml", env: map[string]string{"REQUIRE_API_KEY": "true"}, yaml: "route:\n  require_api_key: false\n", require: true},
		{name: "yaml false", yaml: "route:\n  require_api_key: false\n", allowAnyIP: true},
		{name: "yaml true", yaml: "route:\n  require_api_key: true\n", require: true},
		{name: "--allow-anonymous", args: []string{"--allow-anonymous"}, allowAnyIP: true},
		{name: "OMNI_ALLOW_ANONYMOUS", env: map[string]string{"OMNI_ALLOW_ANONYMOUS": "true"}, allowAnyIP: true},
		{name: "yaml allow_anonymous", yaml: "route:\n  allow_anonymous: true\n", allowAnyIP: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range c.env {
				env[k] = v
			}
			if c.yaml != "" {
				env["OMNI_CONFIG"] = writeFile(t, c.yaml)
			}
			cfg := mustLoad(t, c.args, env)
			if cfg.Route.RequireAPIKey != c.require || cfg.Route.AllowAnonymous != c.allowAnyIP {
				t.Fatalf("require_api_key %v allow_anonymous %v, want %v %v", cfg.Route.RequireAPIKey, cfg.Route.AllowAnonymous, c.require, c.allowAnyIP)
			}
		})
	}
	if _, err := load(t, []string{"--require-api-key", "--allow-anonymous"}, nil); err == nil {
		t.Fatal("--require-api-key with --allow-anonymous accepted")
	}
}

func TestRouteHardeningOptions(t *testing.T) {
	d := mustLoad(t, nil, nil)
	if d.Route.UpstreamMaxBody != 32<<20 || d.Route.UpstreamMaxLine != 4<<20 || d.Route.UpstreamIdleTimeout != 2*time.Minute ||
		len(d.Route.AllowedHosts) != 0 || d.MetricsListen != "127.0.0.1:9090" || d.MetricsToken != "" {
		t.Fatalf("defaults: %+v metrics %q", d.Route, d.MetricsListen)
	}
	c := mustLoad(t, []string{"--route-upstream-max-body", "8MiB", "--route-upstream-max-line=65536", "--route-allowed-hosts", "gw.example.com, admin.example.com:8443",
		"--metrics-listen", "off"},
		map[string]string{"OMNI_ROUTE_UPSTREAM_IDLE_TIMEOUT": "45s", "OMNI_METRICS_TOKEN": "scrape-token-123"})
	if c.Route.UpstreamMaxBody != 8<<20 || c.Route.UpstreamMaxLine != 65536 || c.Route.UpstreamIdleTimeout != 45*time.Second ||
		strings.Join(c.Route.AllowedHosts, ",") != "gw.example.com,admin.example.com:8443" || c.MetricsListen != "off" || c.MetricsToken.Reveal() != "scrape-token-123" {
		t.Fatalf("parsed: %+v metrics %q %q", c.Route, c.MetricsListen, c.MetricsToken.Reveal())
	}
	if strings.Contains(c.YAML(), "scrape-token-123") {
		t.Fatal("the metrics token is printed")
	}
	y := mustLoad(t, nil, map[string]string{"OMNI_CONFIG": writeFile(t, "metrics_listen: 127.0.0.1:0\nroute:\n  upstream_max_body: 1GiB\n  upstream_max_line: 2048\n  allowed_hosts: [gw.example.com]\n")})
	if y.Route.UpstreamMaxBody != 1<<30 || y.Route.UpstreamMaxLine != 2048 || y.MetricsListen != "127.0.0.1:0" || len(y.Route.AllowedHosts) != 1 {
		t.Fatalf("from YAML: %+v %q", y.Route, y.MetricsListen)
	}
	for _, bad := range [][]string{
		{"--route-upstream-max-body", "0"},
		{"--route-upstream-max-body", "12XB"},
		{"--route-upstream-max-line", "100"},
		{"--route-upstream-idle-timeout", "0s"},
		{"--metrics-listen", "nowhere"},
		{"--route-allowed-hosts", "http://gw.example.com/"},
		{"--route-allowed-hosts", "a b"},
	} {
		if _, err := load(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestStoredResponsesOptions(t *testing.T) {
	d := mustLoad(t, nil, nil).Route
	if d.ResponsesTTL != 24*time.Hour || d.ResponsesMaxBytes != 4<<20 || d.ResponsesMaxPerKey != 1000 || d.ResponsesMaxKeyBytes != 64<<20 ||
		d.ResponsesMax != 10000 || d.ResponsesMaxTotalBytes != 256<<20 {
		t.Fatalf("defaults: %+v", d)
	}
	c := mustLoad(t, []string{"--route-responses-ttl", "2h", "--route-responses-max-bytes", "1MiB", "--route-responses-max-per-key=50"},
		map[string]string{"OMNI_ROUTE_RESPONSES_MAX": "500", "OMNI_CONFIG": writeFile(t, "route:\n  responses_max_key_bytes: 8MiB\n  responses_max_total_bytes: 1GiB\n")}).Route
	if c.ResponsesTTL != 2*time.Hour || c.ResponsesMaxBytes != 1<<20 || c.ResponsesMaxPerKey != 50 || c.ResponsesMax != 500 ||
		c.ResponsesMaxKeyBytes != 8<<20 || c.ResponsesMaxTotalBytes != 1<<30 {
		t.Fatalf("parsed: %+v", c)
	}
	for _, bad := range [][]string{
		{"--route-responses-ttl", "0s"},
		{"--route-responses-max-per-key", "0"},
		{"--route-responses-max-bytes", "128MiB"},     // above one key's bytes
		{"--route-responses-max-per-key", "20000"},    // above the total
		{"--route-responses-max-total-bytes", "1MiB"}, // below one key's bytes
	} {
		if _, err := load(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestAuditLogOptions(t *testing.T) {
	d := mustLoad(t, nil, nil).Route
	if d.AuditMaxAge != 365*24*time.Hour || d.AuditMaxRows != 100_000 {
		t.Fatalf("defaults: %+v", d)
	}
	c := mustLoad(t, []string{"--route-audit-max-age", "720h"}, map[string]string{"OMNI_ROUTE_AUDIT_MAX_ROWS": "5000"}).Route
	if c.AuditMaxAge != 720*time.Hour || c.AuditMaxRows != 5000 {
		t.Fatalf("parsed: %+v", c)
	}
	for _, bad := range [][]string{{"--route-audit-max-age", "1m"}, {"--route-audit-max-rows", "0"}, {"--route-audit-max-rows", "1000000000"}} {
		if _, err := load(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// The data dir is created 0700 and the master key 0600; an existing dir
// or key that others can read is reported.
func TestDataDirPermissions(t *testing.T) {
	c := Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	if _, err := c.LoadMasterKey(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(c.DataDir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, %v", st.Mode().Perm(), err)
	}
	if w := c.PermissionWarnings(); len(w) != 0 {
		t.Fatalf("warnings for a fresh data dir: %q", w)
	}
	if err := os.Chmod(c.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(c.DataDir, "master.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := c.PermissionWarnings()
	if len(w) != 2 || !strings.Contains(w[0], c.DataDir) || !strings.Contains(w[0], "0755") || !strings.Contains(w[1], "master.key") || !strings.Contains(w[1], "0644") {
		t.Fatalf("warnings %q", w)
	}
	// A configured master key has no file to check.
	c.MasterKey = "x"
	if err := os.Chmod(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if w := c.PermissionWarnings(); len(w) != 0 {
		t.Fatalf("warnings with --master-key: %q", w)
	}
}

// A --trust-proxy that believes X-Forwarded-For from very many addresses
// is warned about at start; a list of proxies is not.
func TestTrustProxyWarnings(t *testing.T) {
	for v, warn := range map[string]bool{
		"":                          false,
		"false":                     false,
		"127.0.0.1":                 false,
		"10.0.0.0/8,192.168.1.0/24": false,
		"2001:db8::/32":             false,
		"true":                      true,
		"1":                         true,
		"0.0.0.0/0":                 true,
		"127.0.0.1,64.0.0.0/2":      true,
		"::/0":                      true,
		"2000::/3":                  true,
	} {
		c := Default()
		c.TrustProxy = v
		if got := c.TrustProxyWarnings(); (len(got) > 0) != warn || (warn && !strings.Contains(got[0], "--trust-proxy")) {
			t.Errorf("--trust-proxy=%q: warnings %q, want a warning: %v", v, got, warn)
		}
	}
}
