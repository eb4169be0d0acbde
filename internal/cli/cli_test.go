package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	return code, out.String(), errb.String()
}

func TestAdminCommands(t *testing.T) {
	data := t.TempDir()
	code, out, errs := run(t, "edge", "admin", "user", "create", "--data", data, "--email", "Ops@Example.com", "--password", "long enough pw", "--plan", "pro", "--json")
	if code != 0 {
		t.Fatalf("user create: %d %s", code, errs)
	}
	var u struct{ ID, Email, Plan string }
	if err := json.Unmarshal([]byte(out), &u); err != nil || u.Email != "ops@example.com" || u.Plan != "pro" || !strings.HasPrefix(u.ID, "usr_") {
		t.Fatalf("user create output %q: %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(data, "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key not created 0600: %v %v", fi, err)
	}

	code, out, errs = run(t, "edge", "admin", "key", "create", "--data", data, "--email", "ops@example.com", "--name", "fleet", "--expires", "720h", "--json")
	if code != 0 {
		t.Fatalf("key create: %d %s", code, errs)
	}
	var k struct {
		ID, Name, Key string
		ExpiresAt     *string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil || !strings.HasPrefix(k.Key, "oek_") || k.Name != "fleet" || k.ExpiresAt == nil {
		t.Fatalf("key create output %q: %v", out, err)
	}
	code, out, _ = run(t, "edge", "admin", "key", "list", "--data", data, "--email", "ops@example.com", "--json")
	if code != 0 || strings.Contains(out, k.Key) || !strings.Contains(out, k.ID) {
		t.Fatalf("key list must show the key id but never the raw key: %d %s", code, out)
	}
	// Human output shows the raw key once, too.
	code, out, _ = run(t, "edge", "admin", "key", "create", "--data", data, "--email", "ops@example.com")
	if code != 0 || !strings.Contains(out, "oek_") || !strings.Contains(out, "not shown again") {
		t.Fatalf("human key create: %d %s", code, out)
	}

	code, out, errs = run(t, "edge", "admin", "network", "create", "--data", data, "--email", "ops@example.com", "--name", "fleet", "--ip-range", "100.66.1.0/24", "--json")
	if code != 0 {
		t.Fatalf("network create: %d %s", code, errs)
	}
	var n struct {
		ID        string
		IPRange   string `json:"ip_range"`
		IPv6Range string `json:"ipv6_range"`
		Mask      string `json:"subnet_mask"`
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil || n.IPRange != "100.66.1.0/24" || !strings.HasPrefix(n.IPv6Range, "fd") || !strings.HasSuffix(n.IPv6Range, "/120") || n.Mask != "255.255.255.0" {
		t.Fatalf("network create output %q: %v", out, err)
	}
	code, out, _ = run(t, "edge", "admin", "network", "list", "--data", data, "--json")
	var nets []struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &nets) != nil || len(nets) != 1 || nets[0].ID != n.ID {
		t.Fatalf("network list: %d %s", code, out)
	}
	code, out, _ = run(t, "edge", "admin", "device", "list", "--data", data, "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("device list on an empty fleet: %d %q", code, out)
	}
	code, out, _ = run(t, "edge", "admin", "user", "list", "--data", data)
	if code != 0 || !strings.Contains(out, "ops@example.com") || !strings.Contains(out, "EMAIL") {
		t.Fatalf("user list table: %d %s", code, out)
	}
}

func TestAdminErrors(t *testing.T) {
	data := t.TempDir()
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"edge", "admin", "user", "create", "--data", data, "--password", "long enough pw"}, 2, "--email is required"},
		{[]string{"edge", "admin", "user", "create", "--data", data, "--email", "x@example.com", "--password", "short"}, 1, "at least 8"},
		{[]string{"edge", "admin", "user", "create", "--data", data, "--email", "x@example.com", "--password", "long enough pw", "--plan", "gold"}, 1, "unknown plan"},
		{[]string{"edge", "admin", "key", "create", "--data", data, "--email", "nobody@example.com"}, 1, "no user"},
		{[]string{"edge", "admin", "network", "create", "--data", data, "--email", "nobody@example.com", "--name", "n"}, 1, "no user"},
		{[]string{"edge", "admin", "user", "list", "--data", data, "--edge-listen", "nonsense"}, 2, "edge-listen"},
		{[]string{"edge", "admin", "bogus"}, 2, "unknown command"},
	}
	for _, c := range cases {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: code %d stderr %q; want %d containing %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

func TestServePrintConfigRedacts(t *testing.T) {
	code, out, errs := run(t, "serve", "--print-config", "--database", "postgres://omni:hunter2@db:5432/omni", "--redis", "redis://:s3cret@cache:6379/0", "--master-key", "c2VjcmV0LWtleS1ub3QtdG8tYmUtcHJpbnRlZCEhISE=")
	if code != 0 {
		t.Fatalf("print-config: %d %s", code, errs)
	}
	for _, secret := range []string{"hunter2", "s3cret", "c2VjcmV0"} {
		if strings.Contains(out, secret) {
			t.Errorf("printed config leaks %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "db:5432") || !strings.Contains(out, "edge_listen: :8080") {
		t.Errorf("printed config lost non-secret fields:\n%s", out)
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := run(t); code != 0 || !strings.Contains(out, "serve") || !strings.Contains(out, "edge") {
		t.Fatalf("help: %d %s", code, out)
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "omni ") {
		t.Fatalf("version: %d %s", code, out)
	}
}

func TestEdgeNucleusUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"no server":          {"edge", "nucleus", "--security-key", "k", "--public", "n.example.com:51820"},
		"no key":             {"edge", "nucleus", "--server", "http://127.0.0.1:1", "--public", "n.example.com:51820"},
		"no public endpoint": {"edge", "nucleus", "--server", "http://127.0.0.1:1", "--security-key", "k", "--listen", ":0"},
		"bad public":         {"edge", "nucleus", "--server", "http://127.0.0.1:1", "--security-key", "k", "--public", "no-port"},
		"dual without key":   {"edge", "up", "--server", "http://127.0.0.1:1", "--nucleus-listen", "127.0.0.1:0", "--state", t.TempDir()},
	} {
		if code, _, errs := run(t, args...); code != 2 || errs == "" {
			t.Errorf("%s: exit %d, stderr %q; want a usage error", name, code, errs)
		}
	}
}
