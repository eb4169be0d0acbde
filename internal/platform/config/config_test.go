package config

import (
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func load(t *testing.T, args []string, kv map[string]string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, env(kv))
}

func mustLoad(t *testing.T, args []string, kv map[string]string) *Config {
	t.Helper()
	c, err := load(t, args, kv)
	if err != nil {
		t.Fatalf("Load(%v, %v): %v", args, kv, err)
	}
	return c
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "omni.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c := mustLoad(t, nil, nil)
	if !reflect.DeepEqual(*c, d) {
		t.Fatalf("Load with nothing = %+v\nwant defaults %+v", *c, d)
	}
	// Default returns a fresh map each time.
	d.Plans[PlanFree] = PlanLimit{MaxDevices: 1}
	if Default().Plans[PlanFree].MaxDevices != 20 {
		t.Fatal("Default shares its plans map")
	}
}

// defaults < YAML < env < flags, field by field.
func TestPrecedence(t *testing.T) {
	path := writeFile(t, `
edge_listen: ":1001"
route_listen: ":1002"
nucleus_listen: ":1003"
log_level: debug
rate_limit_ip: 7.5
online_window: 30s
trust_proxy: true
`)
	kv := map[string]string{
		"OMNI_CONFIG":         path,
		"OMNI_ROUTE_LISTEN":   ":2002",
		"OMNI_NUCLEUS_LISTEN": ":2003",
		"OMNI_LOG_FORMAT":     "json",
		"OMNI_SESSION_TTL":    "5m",
	}
	c := mustLoad(t, []string{"--nucleus-listen", ":3003", "-session-ttl=7m"}, kv)

	checks := []struct {
		name      string
		got, want any
	}{
		{"edge_listen from YAML", c.EdgeListen, ":1001"},
		{"route_listen env over YAML", c.RouteListen, ":2002"},
		{"nucleus_listen flag over env over YAML", c.NucleusListen, ":3003"},
		{"log_level from YAML", c.LogLevel, "debug"},
		{"log_format from env", c.LogFormat, "json"},
		{"rate_limit_ip from YAML", c.RateLimitIP, 7.5},
		{"online_window from YAML", c.OnlineWindow, 30 * time.Second},
		{"trust_proxy from YAML", c.TrustProxy, "true"},
		{"session_ttl flag over env", c.SessionTTL, 7 * time.Minute},
		{"rate_limit_token default", c.RateLimitToken, 20.0},
		{"data default", c.DataDir, "./data"},
		{"refresh ttl default", c.RefreshTokenTTL, 30 * 24 * time.Hour},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	// A flag set to its default value still wins over env and YAML.
	c = mustLoad(t, []string{"--route-listen=:20128"}, kv)
	if c.RouteListen != ":20128" {
		t.Errorf("explicit flag equal to the default lost to env: %q", c.RouteListen)
	}
	// An empty env value does not override.
	kv["OMNI_EDGE_LISTEN"] = ""
	if c := mustLoad(t, nil, kv); c.EdgeListen != ":1001" {
		t.Errorf("empty env overrode YAML: %q", c.EdgeListen)
	}
}

func TestConfigPath(t *testing.T) {
	a := writeFile(t, "edge_listen: \":1111\"\n")
	b := writeFile(t, "edge_listen: \":2222\"\n")
	cases := []struct {
		args []string
		kv   map[string]string
		want string
	}{
		{[]string{"--config", a}, nil, ":1111"},
		{[]string{"--config=" + a}, nil, ":1111"},
		{[]string{"-config", a}, nil, ":1111"},
		{[]string{"-config=" + a}, nil, ":1111"},
		{nil, map[string]string{"OMNI_CONFIG": a}, ":1111"},
		{[]string{"--config", b}, map[string]string{"OMNI_CONFIG": a}, ":2222"}, // flag over env
		{[]string{"--edge-listen=:3333", "--config", a}, nil, ":3333"},          // flags over the file they name
	}
	for _, tc := range cases {
		c := mustLoad(t, tc.args, tc.kv)
		if c.EdgeListen != tc.want {
			t.Errorf("Load(%v, %v).EdgeListen = %q, want %q", tc.args, tc.kv, c.EdgeListen, tc.want)
		}
	}
	if _, err := load(t, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil {
		t.Error("missing config file accepted")
	}
	if _, err := load(t, nil, map[string]string{"OMNI_CONFIG": filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Error("missing OMNI_CONFIG file accepted")
	}
}

func TestYAMLFile(t *testing.T) {
	path := writeFile(t, `
data: /var/lib/omni
database: postgres://omni:s3cret@db:5432/omni?sslmode=disable
redis: redis://:r3dis@cache:6379/0
master_key: `+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+`
nucleus_public: nucleus.example.com:51820
public_url: https://edge.example.com
plans:
  free: {max_devices: 5, max_networks: 1}
  team: {max_devices: 50, max_networks: 10}
`)
	c := mustLoad(t, []string{"--config", path}, nil)
	if c.DataDir != "/var/lib/omni" || c.Database.Reveal() != "postgres://omni:s3cret@db:5432/omni?sslmode=disable" ||
		c.Redis.Reveal() != "redis://:r3dis@cache:6379/0" || c.NucleusPublic != "nucleus.example.com:51820" || c.PublicURL != "https://edge.example.com" {
		t.Fatalf("loaded %+v", c)
	}
	if got := c.Plans[PlanFree]; got != (PlanLimit{5, 1}) {
		t.Errorf("free = %+v", got)
	}
	if got := c.Plans["team"]; got != (PlanLimit{50, 10}) {
		t.Errorf("team = %+v", got)
	}
	// Plans not named in the file keep their defaults.
	if got := c.Plans[PlanPro]; got != (PlanLimit{100, 20}) {
		t.Errorf("pro = %+v, want the default", got)
	}
	if _, ok := c.Plans[PlanUnlimited]; !ok {
		t.Error("unlimited plan lost")
	}
	if key, err := c.LoadMasterKey(); err != nil || !bytes.Equal(key, bytes.Repeat([]byte{1}, 32)) {
		t.Errorf("master key %x, %v", key, err)
	}
}

func TestYAMLFileErrors(t *testing.T) {
	cases := map[string]string{
		"unknown key":        "edge_listn: \":1\"\n",
		"unknown nested key": "plans:\n  free: {max_devices: 1, max_netwrks: 2}\n",
		"wrong type":         "rate_limit_ip: lots\n",
		"bad duration":       "online_window: forever\n",
		"not a mapping":      "- a\n- b\n",
		"syntax":             "edge_listen: [\n",
	}
	for name, body := range cases {
		if _, err := load(t, []string{"--config", writeFile(t, body)}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The error names the file.
	p := writeFile(t, "bogus: 1\n")
	if _, err := load(t, []string{"--config", p}, nil); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown key error %v should name the file and the key", err)
	}
}

// A config file with nothing set (empty, or comments only) means defaults.
func TestYAMLFileEmpty(t *testing.T) {
	for _, body := range []string{"", "# nothing here\n", "---\n"} {
		c, err := load(t, []string{"--config", writeFile(t, body)}, nil)
		if err != nil {
			t.Errorf("config file %q: %v", body, err)
			continue
		}
		if !reflect.DeepEqual(*c, Default()) {
			t.Errorf("config file %q changed the defaults", body)
		}
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := load(t, nil, map[string]string{"OMNI_RATE_LIMIT_IP": "lots", "OMNI_ONLINE_WINDOW": "forever"})
	if err == nil {
		t.Fatal("bad env values accepted")
	}
	for _, name := range []string{"OMNI_RATE_LIMIT_IP", "OMNI_ONLINE_WINDOW"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if _, err := load(t, nil, map[string]string{"OMNI_TRUST_PROXY": "maybe"}); err == nil {
		t.Error("OMNI_TRUST_PROXY=maybe accepted")
	}
	c := mustLoad(t, nil, map[string]string{"OMNI_TRUST_PROXY": "true", "OMNI_DATA": "/srv/omni"})
	if c.TrustProxy != "true" || c.DataDir != "/srv/omni" {
		t.Errorf("env not applied: %+v", c)
	}
	// Flags: unknown flags and bad values fail.
	if _, err := load(t, []string{"--no-such-flag"}, nil); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, err := load(t, []string{"--rate-limit-token", "x"}, nil); err == nil {
		t.Error("bad flag value accepted")
	}
}

// The caller's own flags on the same FlagSet get env values too.
func TestCallerFlags(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mine := fs.String("user-email", "", "caller flag")
	if _, err := Load(fs, nil, env(map[string]string{"OMNI_USER_EMAIL": "a@example.com"})); err != nil {
		t.Fatal(err)
	}
	if *mine != "a@example.com" {
		t.Fatalf("caller flag = %q", *mine)
	}
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	mine = fs.String("user-email", "", "caller flag")
	if _, err := Load(fs, []string{"--user-email=b@example.com", "pos"}, env(map[string]string{"OMNI_USER_EMAIL": "a@example.com"})); err != nil {
		t.Fatal(err)
	}
	if *mine != "b@example.com" || fs.Arg(0) != "pos" {
		t.Fatalf("caller flag = %q, args %v", *mine, fs.Args())
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error
	}{
		{"edge listen without port", func(c *Config) { c.EdgeListen = "8080" }, "--edge-listen"},
		{"edge listen bad port", func(c *Config) { c.EdgeListen = ":http" }, "--edge-listen"},
		{"route listen port too big", func(c *Config) { c.RouteListen = ":65536" }, "--route-listen"},
		{"nucleus listen empty", func(c *Config) { c.NucleusListen = "" }, "--nucleus-listen"},
		{"nucleus public without host", func(c *Config) { c.NucleusPublic = ":51820" }, "--nucleus-public"},
		{"nucleus public without port", func(c *Config) { c.NucleusPublic = "nucleus.example.com" }, "--nucleus-public"},
		{"nucleus public port 0", func(c *Config) { c.NucleusPublic = "nucleus.example.com:0" }, "--nucleus-public"},
		{"nucleus public port too big", func(c *Config) { c.NucleusPublic = "1.2.3.4:70000" }, "--nucleus-public"},
		{"public url scheme", func(c *Config) { c.PublicURL = "ftp://edge.example.com" }, "--public-url"},
		{"public url no host", func(c *Config) { c.PublicURL = "https://" }, "--public-url"},
		{"public url relative", func(c *Config) { c.PublicURL = "edge.example.com" }, "--public-url"},
		{"database scheme", func(c *Config) { c.Database = "mysql://u:p@h/db" }, "--database"},
		{"database bare path", func(c *Config) { c.Database = "/var/lib/omni.db" }, "--database"},
		{"redis scheme", func(c *Config) { c.Redis = "http://cache:6379" }, "--redis"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "--data"},
		{"negative token rate", func(c *Config) { c.RateLimitToken = -1 }, "rate limits"},
		{"negative ip rate", func(c *Config) { c.RateLimitIP = -0.5 }, "rate limits"},
		{"zero online window", func(c *Config) { c.OnlineWindow = 0 }, "--online-window"},
		{"negative flush", func(c *Config) { c.PresenceFlush = -time.Second }, "--presence-flush"},
		{"zero access ttl", func(c *Config) { c.AccessTokenTTL = 0 }, "--access-token-ttl"},
		{"zero refresh ttl", func(c *Config) { c.RefreshTokenTTL = 0 }, "--refresh-token-ttl"},
		{"zero session ttl", func(c *Config) { c.SessionTTL = 0 }, "--session-ttl"},
		{"missing free plan", func(c *Config) { delete(c.Plans, PlanFree) }, `"free"`},
		{"nil plans", func(c *Config) { c.Plans = nil }, "has no limits"},
		{"negative plan limit", func(c *Config) { c.Plans["team"] = PlanLimit{MaxDevices: -1} }, `"team"`},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "--log-format"},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, "--log-level"},
		{"files s3 endpoint", func(c *Config) {
			c.Route.FilesS3 = &RouteFilesS3{Endpoint: "s3.example.com", Bucket: "b", AccessKey: "a", SecretKey: "s"}
		}, "route.files_s3.endpoint"},
		{"files s3 endpoint path", func(c *Config) {
			c.Route.FilesS3 = &RouteFilesS3{Endpoint: "https://s3.example.com/b", Bucket: "b", AccessKey: "a", SecretKey: "s"}
		}, "route.files_s3.endpoint"},
		{"files s3 secret", func(c *Config) {
			c.Route.FilesS3 = &RouteFilesS3{Endpoint: "https://s3.example.com", Bucket: "b", AccessKey: "a"}
		}, "route.files_s3 needs"},
	}
	for _, tc := range cases {
		c := Default()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error mentioning %s", tc.name, err, tc.want)
		}
	}

	good := []func(*Config){
		func(c *Config) { c.EdgeListen = "127.0.0.1:0" },
		func(c *Config) { c.EdgeListen = "[::1]:8080" },
		func(c *Config) { c.NucleusPublic = "[2001:db8::1]:51820" },
		func(c *Config) { c.NucleusPublic = "203.0.113.7:1" },
		func(c *Config) { c.PublicURL = "http://localhost:8080/base" },
		func(c *Config) { c.Database = "postgresql://u:p@h/db" },
		func(c *Config) { c.Database = "sqlite:///var/lib/omni.db" },
		func(c *Config) { c.Database = "file:omni.db" },
		func(c *Config) { c.Redis = "rediss://:pw@cache:6380/1" },
		func(c *Config) { c.RateLimitIP, c.RateLimitToken = 0, 0 },
		func(c *Config) { c.LogLevel, c.LogFormat = "DEBUG", "JSON" },
		func(c *Config) { c.Plans["team"] = PlanLimit{} },
		func(c *Config) {
			c.Route.FilesS3 = &RouteFilesS3{Endpoint: "http://127.0.0.1:9000/", Bucket: "omni", AccessKey: "a", SecretKey: "s"}
		},
	}
	for i, mutate := range good {
		c := Default()
		mutate(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("good case %d: %v", i, err)
		}
	}

	// All problems at once.
	c := Default()
	c.EdgeListen, c.RateLimitIP, c.LogFormat = "bad", -1, "xml"
	err := c.Validate()
	for _, want := range []string{"--edge-listen", "rate limits", "--log-format"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("joined error %v lacks %s", err, want)
		}
	}

	// Load validates: bad values from any layer fail Load.
	if _, err := load(t, []string{"--edge-listen", "nope"}, nil); err == nil {
		t.Error("Load accepted a bad listen address flag")
	}
	if _, err := load(t, nil, map[string]string{"OMNI_NUCLEUS_PUBLIC": ":51820"}); err == nil {
		t.Error("Load accepted a nucleus-public without host from env")
	}
	if _, err := load(t, []string{"--rate-limit-ip=-3"}, nil); err == nil {
		t.Error("Load accepted a negative rate")
	}
	if _, err := load(t, []string{"--config", writeFile(t, "rate_limit_token: -1\n")}, nil); err == nil {
		t.Error("Load accepted a negative rate from YAML")
	}
}

func TestPlansFlag(t *testing.T) {
	c := mustLoad(t, []string{"--plans", "free=5/1, pro=50/10,Team=7/3,"}, nil)
	want := map[string]PlanLimit{
		PlanFree:      {5, 1},
		PlanPro:       {50, 10},
		PlanUnlimited: {},
		"team":        {7, 3},
	}
	if !reflect.DeepEqual(c.Plans, want) {
		t.Fatalf("plans = %+v, want %+v", c.Plans, want)
	}
	// Env, then flags, each merging.
	c = mustLoad(t, []string{"--plans=pro=1/1"}, map[string]string{"OMNI_PLANS": "free=2/2,pro=3/3"})
	if c.Plans[PlanFree] != (PlanLimit{2, 2}) || c.Plans[PlanPro] != (PlanLimit{1, 1}) {
		t.Fatalf("plans env+flag = %+v", c.Plans)
	}
	// 0 means unlimited and is allowed.
	c = mustLoad(t, []string{"--plans=free=0/0"}, nil)
	if c.Plans[PlanFree] != (PlanLimit{}) {
		t.Fatalf("free=0/0 = %+v", c.Plans[PlanFree])
	}

	for _, bad := range []string{"free", "free=5", "free=5/", "free=/5", "free=a/b", "free=-1/2", "free=1/-2", "free=1.5/2", "free=1/2/3", "free:1/2"} {
		if _, err := load(t, []string{"--plans", bad}, nil); err == nil {
			t.Errorf("--plans %q accepted", bad)
		}
		var p planFlag = planFlag{&Config{}}
		if err := p.Set(bad); err == nil {
			t.Errorf("planFlag.Set(%q) accepted", bad)
		}
	}

	// String is sorted and round-trips through Set.
	cfg := Default()
	p := planFlag{&cfg}
	s := p.String()
	if s != "free=20/3,pro=100/20,unlimited=0/0" {
		t.Fatalf("String = %q", s)
	}
	other := Config{}
	if err := (planFlag{&other}).Set(s); err != nil || !reflect.DeepEqual(other.Plans, cfg.Plans) {
		t.Fatalf("round trip: %+v, %v", other.Plans, err)
	}
	if (planFlag{}).String() != "" {
		t.Fatal("zero planFlag String not empty")
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"postgres://omni:s3cret@db:5432/omni?sslmode=disable", "postgres://omni:REDACTED@db:5432/omni?sslmode=disable"},
		{"postgresql://omni@db/omni?password=s3cret&sslmode=require", "postgresql://omni@db/omni?password=REDACTED&sslmode=require"},
		{"postgres://omni@db/omni?sslpassword=s3cret", "postgres://omni@db/omni?sslpassword=REDACTED"},
		{"postgres://omni@db/omni", "postgres://omni@db/omni"},
		{"redis://:r3dis@cache:6379/0", "redis://:REDACTED@cache:6379/0"},
		{"rediss://default:r3dis@cache:6380/1", "rediss://default:REDACTED@cache:6380/1"},
		{"redis://cache:6379/0", "redis://cache:6379/0"},
		{"sqlite:///var/lib/omni/omni.db", "sqlite:///var/lib/omni/omni.db"},
		{"sqlite://data/omni.db", "sqlite://data/omni.db"},
		{"sqlite:omni.db", "sqlite:omni.db"},
		{"file:/var/lib/omni.db", "file:/var/lib/omni.db"},
		{"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "REDACTED"},
		{"host=db user=omni password=s3cret", "REDACTED"},
		{"not a url but secret", "REDACTED"},
	}
	for _, tc := range cases {
		if got := Secret(tc.in).String(); got != tc.want {
			t.Errorf("Secret(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func secretConfig(t *testing.T, dataDir string) (*Config, []string) {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	c := mustLoad(t, []string{
		"--database", "postgres://omni:pg-s3cret@db:5432/omni?sslmode=disable",
		"--redis", "redis://:redis-s3cret@cache:6379/0",
		"--master-key", key,
		"--data", dataDir,
	}, nil)
	return c, []string{"pg-s3cret", "redis-s3cret", key}
}

func TestYAMLRedacted(t *testing.T) {
	c, secrets := secretConfig(t, "/var/lib/omni")
	out := c.YAML()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("YAML() leaks %q:\n%s", s, out)
		}
	}
	for _, want := range []string{
		"postgres://omni:REDACTED@db:5432/omni?sslmode=disable",
		"redis://:REDACTED@cache:6379/0",
		"master_key: REDACTED",
		"data: /var/lib/omni",
		"edge_listen: :8080",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("YAML() lacks %q:\n%s", want, out)
		}
	}
	// The secrets themselves are intact.
	if c.Database.Reveal() != "postgres://omni:pg-s3cret@db:5432/omni?sslmode=disable" {
		t.Fatalf("Reveal = %q", c.Database.Reveal())
	}
	// fmt printing redacts too.
	for _, verb := range []string{"%v", "%+v", "%s"} {
		printed := fmt.Sprintf(verb, *c)
		for _, s := range secrets {
			if strings.Contains(printed, s) {
				t.Errorf("fmt %s leaks %q: %s", verb, s, printed)
			}
		}
	}
	// Flag help shows redacted defaults.
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	file := writeFile(t, "database: postgres://omni:pg-s3cret@db/omni\nredis: redis://:redis-s3cret@cache:6379/0\n")
	if _, err := Load(fs, []string{"--config", file}, env(nil)); err != nil {
		t.Fatal(err)
	}
	fs.PrintDefaults()
	if strings.Contains(help.String(), "s3cret") || !strings.Contains(help.String(), "postgres://omni:REDACTED@db/omni") {
		t.Errorf("flag help should show the redacted DSN and no secret:\n%s", help.String())
	}
}

func TestYAMLSQLiteReadable(t *testing.T) {
	for _, dsn := range []string{"sqlite:///var/lib/omni/omni.db", "sqlite://data/omni.db", "file:/srv/omni.db"} {
		c := mustLoad(t, []string{"--database", dsn}, nil)
		if out := c.YAML(); !strings.Contains(out, "database: "+dsn) {
			t.Errorf("YAML() hides the sqlite path %s:\n%s", dsn, out)
		}
		if c.DatabaseDSN() != dsn {
			t.Errorf("DatabaseDSN = %q", c.DatabaseDSN())
		}
	}
}

// The printed YAML of a configuration without secrets loads back to it.
func TestYAMLRoundTrip(t *testing.T) {
	c := mustLoad(t, []string{"--edge-listen=:9000", "--online-window=45s", "--plans=team=3/4", "--trust-proxy", "--database=sqlite:///x/omni.db"}, nil)
	back := mustLoad(t, []string{"--config", writeFile(t, c.YAML())}, nil)
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("YAML round trip:\n%+v\n%+v\nYAML:\n%s", c, back, c.YAML())
	}
}

func TestDatabaseDSN(t *testing.T) {
	c := Default()
	if got := c.DatabaseDSN(); got != "sqlite://./data/omni.db" {
		t.Errorf("default DSN = %q", got)
	}
	c.DataDir = "/var/lib/omni/"
	if got := c.DatabaseDSN(); got != "sqlite:///var/lib/omni/omni.db" {
		t.Errorf("DSN = %q", got)
	}
	c.Database = "postgres://u:p@h/db"
	if got := c.DatabaseDSN(); got != "postgres://u:p@h/db" {
		t.Errorf("configured DSN = %q, want revealed", got)
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Default()
	c.DataDir = dir
	k1, err := c.LoadMasterKey()
	if err != nil || len(k1) != 32 {
		t.Fatalf("generated key %x, %v", k1, err)
	}
	st, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	k2, err := c.LoadMasterKey()
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load %x, %v; want %x", k2, err, k1)
	}
	// The configured key wins over the file.
	want := bytes.Repeat([]byte{9}, 32)
	c.MasterKey = Secret(base64.StdEncoding.EncodeToString(want))
	if k, err := c.LoadMasterKey(); err != nil || !bytes.Equal(k, want) {
		t.Fatalf("configured key %x, %v", k, err)
	}
	for _, bad := range []string{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), base64.StdEncoding.EncodeToString(make([]byte, 33)), "!!!!"} {
		c.MasterKey = Secret(bad)
		if _, err := c.LoadMasterKey(); err == nil {
			t.Errorf("master key %q accepted", bad)
		} else if strings.Contains(err.Error(), bad) && len(bad) > 8 {
			t.Errorf("error leaks the key: %v", err)
		}
	}
	// A file with surrounding whitespace is fine; a bad file is an error.
	c.MasterKey = ""
	d2 := t.TempDir()
	c.DataDir = d2
	if err := os.WriteFile(filepath.Join(d2, "master.key"), []byte("  "+base64.StdEncoding.EncodeToString(want)+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := c.LoadMasterKey(); err != nil || !bytes.Equal(k, want) {
		t.Fatalf("key file with whitespace: %x, %v", k, err)
	}
	if err := os.WriteFile(filepath.Join(d2, "master.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadMasterKey(); err == nil {
		t.Fatal("garbage key file accepted")
	}
	// A data dir that cannot be created.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.DataDir = filepath.Join(f, "sub")
	if _, err := c.LoadMasterKey(); err == nil {
		t.Fatal("data dir below a file accepted")
	}
}

// Replicas starting at once on a shared data dir all get the same key.
func TestLoadMasterKeyConcurrent(t *testing.T) {
	for round := range 20 {
		c := Default()
		c.DataDir = t.TempDir()
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				cc := c
				keys[i], errs[i] = cc.LoadMasterKey()
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d loader %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: loaders got different keys", round)
			}
		}
	}
}

func TestInitialPassword(t *testing.T) {
	if c := mustLoad(t, nil, map[string]string{"INITIAL_PASSWORD": "plain-env-pass"}); c.Route.InitialPassword.Reveal() != "plain-env-pass" {
		t.Fatalf("INITIAL_PASSWORD = %q", c.Route.InitialPassword.Reveal())
	}
	c := mustLoad(t, nil, map[string]string{"INITIAL_PASSWORD": "plain-env-pass", "OMNI_INITIAL_PASSWORD": "omni-env-pass"})
	if c.Route.InitialPassword.Reveal() != "omni-env-pass" {
		t.Fatalf("OMNI_INITIAL_PASSWORD should win, got %q", c.Route.InitialPassword.Reveal())
	}
	if strings.Contains(c.YAML(), "omni-env-pass") {
		t.Fatal("the initial password is printed")
	}
	if _, err := load(t, nil, map[string]string{"INITIAL_PASSWORD": "short"}); err == nil {
		t.Fatal("a 5-character initial password was accepted")
	}
	// Gateway keys may all come from the management API.
	if c := mustLoad(t, []string{"--require-api-key"}, nil); !c.Route.RequireAPIKey {
		t.Fatal("--require-api-key without config keys was not accepted")
	}
}

// --trust-proxy takes trusted proxy networks; the legacy boolean forms
// keep working ("true" and a bare flag mean loopback and private ranges).
func TestTrustProxyList(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	private := pfx("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []netip.Prefix
	}{
		{nil, nil, nil},
		{[]string{"--trust-proxy"}, nil, private},
		{[]string{"--trust-proxy=true"}, nil, private},
		{[]string{"--trust-proxy=false"}, nil, nil},
		{[]string{"--trust-proxy=10.1.0.0/16, 192.0.2.7,2001:db8::/32"}, nil, pfx("10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32")},
		{nil, map[string]string{"OMNI_TRUST_PROXY": "203.0.113.0/24"}, pfx("203.0.113.0/24")},
		{[]string{"--trust-proxy=10.1.2.3/16"}, nil, pfx("10.1.0.0/16")},
	} {
		c := mustLoad(t, tc.args, tc.env)
		if got := c.TrustedProxies(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v %v: TrustedProxies = %v, want %v", tc.args, tc.env, got, tc.want)
		}
	}
	for _, bad := range []string{"maybe", "10.0.0.0/33", "10.0.0.0/8,,", "host.example"} {
		if _, err := load(t, []string{"--trust-proxy=" + bad}, nil); err == nil || !strings.Contains(err.Error(), "trust-proxy") {
			t.Errorf("--trust-proxy=%s: err = %v, want an error naming the flag", bad, err)
		}
	}
	c := mustLoad(t, []string{"--config", writeFile(t, "trust_proxy: 10.0.0.0/8,127.0.0.1\n")}, nil)
	if got := c.TrustedProxies(); !reflect.DeepEqual(got, pfx("10.0.0.0/8", "127.0.0.1/32")) {
		t.Errorf("YAML list: %v", got)
	}
}
