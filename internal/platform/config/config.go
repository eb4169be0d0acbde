// Package config owns process configuration: defaults, an optional YAML
// file, OMNI_* environment variables and command-line flags, applied in
// that order (later wins), then validated. Secrets (DSN passwords, the
// Redis URL's password, the master key) are redacted whenever the
// configuration is printed or logged.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Secret is a string that never prints: String, LogValue-style printing
// and YAML output show it redacted. For URLs only the password is hidden.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns the redacted form.
func (s Secret) String() string { return redact(string(s)) }

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", redact(string(s))) }

// MarshalYAML prints the redacted form.
func (s Secret) MarshalYAML() (any, error) { return redact(string(s)), nil }

func redact(v string) string {
	if v == "" {
		return ""
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
		q := u.Query()
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "REDACTED")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if strings.HasPrefix(v, "sqlite:") || strings.HasPrefix(v, "file:") {
		return v // a SQLite file path holds no secret
	}
	return "REDACTED"
}

// PlanLimit bounds what a user on one plan may own; 0 means unlimited.
type PlanLimit struct {
	MaxDevices  int `yaml:"max_devices"`
	MaxNetworks int `yaml:"max_networks"`
}

// Config is the whole configuration of `omni serve` and the admin CLI.
type Config struct {
	DataDir       string `yaml:"data"`
	Database      Secret `yaml:"database"`
	Redis         Secret `yaml:"redis"`
	RedisPrefix   string `yaml:"redis_prefix"`
	MasterKey     Secret `yaml:"master_key"`
	EdgeListen    string `yaml:"edge_listen"`
	RouteListen   string `yaml:"route_listen"`
	NucleusListen string `yaml:"nucleus_listen"`
	NucleusPublic string `yaml:"nucleus_public"`
	NucleusName   string `yaml:"nucleus_name"`
	PublicURL     string `yaml:"public_url"`
	LogLevel      string `yaml:"log_level"`
	LogFormat     string `yaml:"log_format"`
	// TrustProxy lists the proxy networks (comma-separated CIDRs or
	// addresses) whose X-Forwarded-For is believed; "true" means loopback
	// and private ranges, "" or "false" none. See TrustedProxies.
	TrustProxy string `yaml:"trust_proxy"`

	RateLimitToken float64 `yaml:"rate_limit_token"`
	RateLimitIP    float64 `yaml:"rate_limit_ip"`

	OnlineWindow    time.Duration `yaml:"online_window"`
	PresenceFlush   time.Duration `yaml:"presence_flush"`
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	SessionTTL      time.Duration `yaml:"session_ttl"`
	// NetworkMaxRange is the largest explicit network range, as a prefix
	// length: 16 allows at most a /16.
	NetworkMaxRange int `yaml:"network_max_range"`
	// DNSSuffix is the domain under which every device of a network has a
	// name: <device>.<network>.<suffix>.
	DNSSuffix string `yaml:"dns_suffix"`
	// LoginPendingPerIP and LoginPendingMax cap the browser login sessions
	// waiting for approval, per client IP and in all; LoginSocketsPerIP
	// caps the session WebSockets open per client IP (per replica).
	LoginPendingPerIP int           `yaml:"login_pending_per_ip"`
	LoginPendingMax   int           `yaml:"login_pending_max"`
	LoginSocketsPerIP int           `yaml:"login_sockets_per_ip"`
	ShutdownGrace     time.Duration `yaml:"shutdown_grace"`

	Plans map[string]PlanLimit `yaml:"plans"`

	// MetricsListen is the loopback (or private) address /metrics is
	// served on; "off" serves it nowhere. The public listeners serve it
	// only with MetricsToken as a bearer token.
	MetricsListen string `yaml:"metrics_listen"`
	MetricsToken  Secret `yaml:"metrics_token,omitempty"`

	Route RouteConfig `yaml:"route,omitempty"`
}

// RouteConfig declares the gateway's upstreams and routing in the
// configuration file.
type RouteConfig struct {
	Providers []RouteProvider   `yaml:"providers,omitempty"`
	Aliases   map[string]string `yaml:"aliases,omitempty"`
	Combos    []RouteCombo      `yaml:"combos,omitempty"`
	// APIKeys are accepted gateway keys; with RequireAPIKey every /v1
	// route needs one of them.
	APIKeys       []Secret `yaml:"api_keys,omitempty"`
	RequireAPIKey bool     `yaml:"require_api_key,omitempty"`
	// InitialPassword is the management dashboard's password, stored
	// (hashed) at the first start when none is stored yet.
	InitialPassword Secret `yaml:"initial_password,omitempty"`
	// AllowAnonymous serves requests without a key from any address;
	// otherwise (and without RequireAPIKey) only from the gateway host.
	// Set by --allow-anonymous or an explicit REQUIRE_API_KEY=false.
	AllowAnonymous bool `yaml:"allow_anonymous,omitempty"`
	// AllowedHosts are the Host names (HOST or HOST:PORT) the management
	// API answers under besides the loopback names; "*" is any.
	AllowedHosts []string `yaml:"allowed_hosts,omitempty"`
	// Upstream answers are bounded: a non-streamed body, one line of a
	// stream, and the wait for more bytes once an answer has started.
	UpstreamMaxBody     ByteSize      `yaml:"upstream_max_body"`
	UpstreamMaxLine     ByteSize      `yaml:"upstream_max_line"`
	UpstreamIdleTimeout time.Duration `yaml:"upstream_idle_timeout"`
	// Stored Responses conversations (previous_response_id) are kept
	// ResponsesTTL, each at most ResponsesMaxBytes, per gateway key at
	// most ResponsesMaxPerKey of ResponsesMaxKeyBytes, in all at most
	// ResponsesMax of ResponsesMaxTotalBytes (oldest evicted first).
	ResponsesTTL           time.Duration `yaml:"responses_ttl"`
	ResponsesMaxBytes      ByteSize      `yaml:"responses_max_bytes"`
	ResponsesMaxPerKey     int           `yaml:"responses_max_per_key"`
	ResponsesMaxKeyBytes   ByteSize      `yaml:"responses_max_key_bytes"`
	ResponsesMax           int           `yaml:"responses_max"`
	ResponsesMaxTotalBytes ByteSize      `yaml:"responses_max_total_bytes"`
	// FilesS3 keeps the Files API's content in an S3-compatible bucket
	// (replicas sharing files) instead of <data>/files; nil: the
	// directory.
	FilesS3 *RouteFilesS3 `yaml:"files_s3,omitempty"`
	// The compliance audit log keeps management changes AuditMaxAge, at
	// most AuditMaxRows of them (the oldest deleted first).
	AuditMaxAge  time.Duration `yaml:"audit_max_age"`
	AuditMaxRows int           `yaml:"audit_max_rows"`
}

// RouteFilesS3 is an S3-compatible bucket for the Files API's content.
type RouteFilesS3 struct {
	Endpoint  string `yaml:"endpoint"` // https://s3.example.com, without the bucket (path-style requests)
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"` // us-east-1 when empty
	AccessKey Secret `yaml:"access_key"`
	SecretKey Secret `yaml:"secret_key"`
	Prefix    string `yaml:"prefix"` // prepended to every object name, e.g. "omni-files/"
}

// RouteProvider is one upstream with its credentials (one connection
// each).
type RouteProvider struct {
	ID      string            `yaml:"id"`
	Type    string            `yaml:"type"` // openai, openai-compatible, anthropic, …
	BaseURL string            `yaml:"base_url"`
	APIKeys []Secret          `yaml:"api_keys"`
	Headers map[string]string `yaml:"headers"`
	Models  []string          `yaml:"models"`
	// ParamRules drop request parameters some of this provider's models
	// reject, on top of the built-in rules.
	ParamRules []RouteParamRule `yaml:"param_rules"`
	// Timeout bounds each attempt until its first answer (the whole
	// response, or a stream's first event); when it runs out the next
	// connection or combo target is tried. 0: no bound.
	Timeout time.Duration `yaml:"timeout"`
}

// RouteParamRule names parameters to drop for models matching a glob.
type RouteParamRule struct {
	Model string   `yaml:"model"`
	Drop  []string `yaml:"drop"`
	OneOf []string `yaml:"one_of"`
}

// RouteCombo is a named list of "provider/model" targets.
type RouteCombo struct {
	Name     string   `yaml:"name"`
	Strategy string   `yaml:"strategy"`
	Targets  []string `yaml:"targets"`
}

// Plan names.
const (
	PlanFree      = "free"
	PlanPro       = "pro"
	PlanUnlimited = "unlimited"
)

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		DataDir:         "./data",
		RedisPrefix:     "omni:",
		EdgeListen:      ":8080",
		RouteListen:     ":20128",
		NucleusListen:   ":51820",
		NucleusName:     "Built-in nucleus",
		LogLevel:        "info",
		LogFormat:       "text",
		RateLimitToken:  20,
		RateLimitIP:     100,
		OnlineWindow:    90 * time.Second,
		PresenceFlush:   10 * time.Second,
		AccessTokenTTL:  15 * time.Minute,
		RefreshTokenTTL: 30 * 24 * time.Hour,
		SessionTTL:      15 * time.Minute,
		NetworkMaxRange: 16,
		DNSSuffix:       "omni.internal",

		LoginPendingPerIP: 32,
		LoginPendingMax:   10000,
		LoginSocketsPerIP: 32,
		ShutdownGrace:     10 * time.Second,
		MetricsListen:     "127.0.0.1:9090",
		Route: RouteConfig{
			UpstreamMaxBody:     32 << 20,
			UpstreamMaxLine:     4 << 20,
			UpstreamIdleTimeout: 2 * time.Minute,

			ResponsesTTL:           24 * time.Hour,
			ResponsesMaxBytes:      4 << 20,
			ResponsesMaxPerKey:     1000,
			ResponsesMaxKeyBytes:   64 << 20,
			ResponsesMax:           10000,
			ResponsesMaxTotalBytes: 256 << 20,

			AuditMaxAge:  365 * 24 * time.Hour,
			AuditMaxRows: 100_000,
		},
		Plans: map[string]PlanLimit{
			PlanFree:      {MaxDevices: 20, MaxNetworks: 3},
			PlanPro:       {MaxDevices: 100, MaxNetworks: 20},
			PlanUnlimited: {},
		},
	}
}

// DatabaseDSN returns the configured DSN or the SQLite file in the data dir.
func (c *Config) DatabaseDSN() string {
	if c.Database != "" {
		return c.Database.Reveal()
	}
	return "sqlite://" + strings.TrimRight(c.DataDir, "/") + "/omni.db"
}

// Load builds a Config from defaults, the YAML file named by --config (or
// $OMNI_CONFIG), the environment and args, in that order. It registers its
// flags on fs, which the caller may have populated with its own flags.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	cfg := Default()
	path := getenv("OMNI_CONFIG")
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if v, ok := strings.CutPrefix(a, "-config="); ok {
			path = v
		} else if (a == "--config" || a == "-config") && i+1 < len(args) {
			path = args[i+1]
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // an empty file sets nothing
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	fs.String("config", path, "YAML configuration file (env OMNI_CONFIG)")
	plans := planFlag{&cfg}
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (SQLite database, master key)")
	fs.Var((*secretFlag)(&cfg.Database), "database", "database DSN: postgres://… or sqlite://PATH (default: SQLite in the data dir)")
	fs.Var((*secretFlag)(&cfg.Redis), "redis", "Redis URL (redis://host:6379/0) to share state between replicas (optional)")
	fs.StringVar(&cfg.RedisPrefix, "redis-prefix", cfg.RedisPrefix, "prefix of every Redis key, to share one Redis between deployments")
	fs.Var((*secretFlag)(&cfg.MasterKey), "master-key", "base64 32-byte master key (default: generated in DATA/master.key); replicas must share it")
	fs.StringVar(&cfg.EdgeListen, "edge-listen", cfg.EdgeListen, "OmniEdge control-plane API listen address")
	fs.StringVar(&cfg.RouteListen, "route-listen", cfg.RouteListen, "OmniRoute gateway listen address")
	fs.StringVar(&cfg.NucleusListen, "nucleus-listen", cfg.NucleusListen, "built-in nucleus UDP listen address")
	fs.StringVar(&cfg.NucleusPublic, "nucleus-public", cfg.NucleusPublic, "HOST:PORT the join response advertises for the built-in nucleus")
	fs.StringVar(&cfg.NucleusName, "nucleus-name", cfg.NucleusName, "display name of the built-in nucleus")
	fs.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "external base URL of the edge API, used in login links (default http://HOST:PORT of --edge-listen)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	fs.Var((*trustFlag)(&cfg.TrustProxy), "trust-proxy", "trusted proxy CIDRs, comma-separated (--trust-proxy=10.0.0.0/8,127.0.0.1): the client IP is the right-most X-Forwarded-For entry not among them; true: loopback and private ranges")
	fs.Float64Var(&cfg.RateLimitToken, "rate-limit-token", cfg.RateLimitToken, "requests per second per access token (0: off)")
	fs.Float64Var(&cfg.RateLimitIP, "rate-limit-ip", cfg.RateLimitIP, "requests per second per client IP (0: off)")
	fs.DurationVar(&cfg.OnlineWindow, "online-window", cfg.OnlineWindow, "a device is online while its last heartbeat is younger than this")
	fs.DurationVar(&cfg.PresenceFlush, "presence-flush", cfg.PresenceFlush, "how often heartbeats are flushed to the database")
	fs.DurationVar(&cfg.AccessTokenTTL, "access-token-ttl", cfg.AccessTokenTTL, "lifetime of access tokens")
	fs.DurationVar(&cfg.RefreshTokenTTL, "refresh-token-ttl", cfg.RefreshTokenTTL, "lifetime of refresh tokens")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "lifetime of a browser login session")
	fs.StringVar(&cfg.DNSSuffix, "dns-suffix", cfg.DNSSuffix, "domain of the devices' names: <device>.<network>.<suffix>")
	fs.IntVar(&cfg.NetworkMaxRange, "network-max-range", cfg.NetworkMaxRange, "largest explicit network range as a prefix length (16: at most a /16; 10..30)")
	fs.IntVar(&cfg.LoginPendingPerIP, "login-pending-per-ip", cfg.LoginPendingPerIP, "browser login sessions awaiting approval per client IP")
	fs.IntVar(&cfg.LoginPendingMax, "login-pending-max", cfg.LoginPendingMax, "browser login sessions awaiting approval in all")
	fs.IntVar(&cfg.LoginSocketsPerIP, "login-sockets-per-ip", cfg.LoginSocketsPerIP, "login-session WebSockets open per client IP on one replica")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "time given to in-flight requests on shutdown")
	fs.BoolVar(&cfg.Route.RequireAPIKey, "require-api-key", cfg.Route.RequireAPIKey, "require a gateway API key on every /v1 route (env REQUIRE_API_KEY too)")
	fs.Var((*secretFlag)(&cfg.Route.InitialPassword), "initial-password", "dashboard password stored at the first start of the gateway when none is set (env INITIAL_PASSWORD too)")
	fs.Var(plans, "plans", "plan limits as PLAN=DEVICES/NETWORKS,… (0: unlimited), e.g. free=20/3,pro=100/20")
	hardeningFlags(fs, &cfg)

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		env := "OMNI_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("config: %s: %w", env, err))
			}
		}
	})
	if v := getenv("REQUIRE_API_KEY"); v != "" && getenv("OMNI_REQUIRE_API_KEY") == "" {
		if err := fs.Set("require-api-key", v); err != nil {
			envErr = errors.Join(envErr, fmt.Errorf("config: REQUIRE_API_KEY: %w", err))
		}
	}
	if v := getenv("INITIAL_PASSWORD"); v != "" && getenv("OMNI_INITIAL_PASSWORD") == "" {
		cfg.Route.InitialPassword = Secret(v)
	}
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := explicitAnonymous(fs, path, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks every field and returns all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	for name, addr := range map[string]string{"edge-listen": c.EdgeListen, "route-listen": c.RouteListen, "nucleus-listen": c.NucleusListen} {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad("--%s %q is not HOST:PORT", name, addr)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("--%s %q has an invalid port", name, addr)
		}
	}
	if c.NucleusPublic != "" {
		if h, port, err := net.SplitHostPort(c.NucleusPublic); err != nil || h == "" {
			bad("--nucleus-public %q is not HOST:PORT", c.NucleusPublic)
		} else if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			bad("--nucleus-public %q has an invalid port", c.NucleusPublic)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--public-url %q must be an http(s) URL", c.PublicURL)
		}
	}
	if d := c.Database.Reveal(); d != "" {
		if !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") && !strings.HasPrefix(d, "sqlite:") && !strings.HasPrefix(d, "file:") {
			bad("--database must start with postgres://, postgresql://, sqlite: or file:")
		}
	}
	if r := c.Redis.Reveal(); r != "" && !strings.HasPrefix(r, "redis://") && !strings.HasPrefix(r, "rediss://") {
		bad("--redis must be a redis:// or rediss:// URL")
	}
	if c.DataDir == "" {
		bad("--data must not be empty")
	}
	if _, err := ParseTrustProxy(c.TrustProxy); err != nil {
		bad("--trust-proxy: %v", err)
	}
	if !ValidDNSSuffix(c.DNSSuffix) {
		bad("--dns-suffix %q must be a domain name: labels of a-z, 0-9 and '-', at most 120 characters", c.DNSSuffix)
	}
	if c.NetworkMaxRange < 10 || c.NetworkMaxRange > 30 {
		bad("--network-max-range %d must be between 10 and 30", c.NetworkMaxRange)
	}
	if c.LoginPendingPerIP < 1 || c.LoginPendingMax < 1 || c.LoginSocketsPerIP < 1 {
		bad("--login-pending-per-ip, --login-pending-max and --login-sockets-per-ip must be at least 1")
	}
	if c.RateLimitToken < 0 || c.RateLimitIP < 0 {
		bad("rate limits must be >= 0")
	}
	for name, d := range map[string]time.Duration{"online-window": c.OnlineWindow, "presence-flush": c.PresenceFlush,
		"access-token-ttl": c.AccessTokenTTL, "refresh-token-ttl": c.RefreshTokenTTL, "session-ttl": c.SessionTTL} {
		if d <= 0 {
			bad("--%s must be positive", name)
		}
	}
	for _, p := range []string{PlanFree, PlanPro, PlanUnlimited} {
		if _, ok := c.Plans[p]; !ok {
			bad("plan %q has no limits", p)
		}
	}
	for p, l := range c.Plans {
		if l.MaxDevices < 0 || l.MaxNetworks < 0 {
			bad("plan %q limits must be >= 0", p)
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Route.Providers {
		switch {
		case p.ID == "" || strings.ContainsAny(p.ID, "/ "):
			bad("route.providers[%d]: id %q must be non-empty without '/' or spaces", i, p.ID)
		case seen[p.ID]:
			bad("route.providers[%d]: duplicate id %q", i, p.ID)
		case p.Type == "":
			bad("route.providers[%d] (%s): type is required", i, p.ID)
		}
		seen[p.ID] = true
	}
	if s3 := c.Route.FilesS3; s3 != nil {
		if u, err := url.Parse(s3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("route.files_s3.endpoint %q must be an http(s) URL without a path (the bucket is bucket)", s3.Endpoint)
		}
		if s3.Bucket == "" || strings.ContainsAny(s3.Bucket, "/ ") || s3.AccessKey == "" || s3.SecretKey == "" {
			bad("route.files_s3 needs a bucket (without '/' or spaces), access_key and secret_key")
		}
	}
	if c.Route.InitialPassword != "" && len(c.Route.InitialPassword) < 8 {
		bad("the initial dashboard password must be at least 8 characters")
	}
	errs = append(errs, c.validateHardening()...)
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		bad("--log-format must be text or json")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("--log-level must be debug, info, warn or error")
	}
	return errors.Join(errs...)
}

// YAML renders the configuration with secrets redacted.
func (c *Config) YAML() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

type secretFlag Secret

// trustFlag is --trust-proxy: a list of networks, or a bare flag (the
// legacy boolean form, meaning "true").
type trustFlag string

func (f *trustFlag) String() string   { return string(*f) }
func (f *trustFlag) IsBoolFlag() bool { return true }
func (f *trustFlag) Set(v string) error {
	if _, err := ParseTrustProxy(v); err != nil {
		return err
	}
	*f = trustFlag(v)
	return nil
}

// privateNets are what --trust-proxy=true trusts: loopback and the private
// ranges a reverse proxy on the same host or network uses.
var privateNets = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// ParseTrustProxy parses a --trust-proxy value: comma-separated CIDRs or
// single addresses; "true" for loopback and private ranges; "" or "false"
// for none.
func ParseTrustProxy(v string) ([]netip.Prefix, error) {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "", "false", "0":
		return nil, nil
	case "true", "1":
		v = strings.Join(privateNets, ",")
	}
	var out []netip.Prefix
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR, an IP address, true or false", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// TrustedProxies returns the parsed --trust-proxy networks (Validate has
// checked them).
func (c *Config) TrustedProxies() []netip.Prefix {
	p, _ := ParseTrustProxy(c.TrustProxy)
	return p
}

func (s *secretFlag) String() string     { return Secret(*s).String() }
func (s *secretFlag) Set(v string) error { *s = secretFlag(v); return nil }

type planFlag struct{ c *Config }

func (p planFlag) String() string {
	if p.c == nil {
		return ""
	}
	var parts []string
	for name, l := range p.c.Plans {
		parts = append(parts, fmt.Sprintf("%s=%d/%d", name, l.MaxDevices, l.MaxNetworks))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (p planFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, lim, ok := strings.Cut(part, "=")
		d, n, ok2 := strings.Cut(lim, "/")
		name = strings.TrimSpace(name)
		if !ok || !ok2 || name == "" {
			return fmt.Errorf("plan limit %q is not PLAN=DEVICES/NETWORKS", part)
		}
		dv, err1 := strconv.Atoi(d)
		nv, err2 := strconv.Atoi(n)
		if err1 != nil || err2 != nil || dv < 0 || nv < 0 {
			return fmt.Errorf("plan limit %q needs non-negative integers", part)
		}
		if p.c.Plans == nil {
			p.c.Plans = map[string]PlanLimit{}
		}
		p.c.Plans[strings.ToLower(name)] = PlanLimit{MaxDevices: dv, MaxNetworks: nv}
	}
	return nil
}

// ValidDNSSuffix reports whether s is a usable suffix for the devices'
// names: dot-separated labels of lower-case letters, digits and inner
// hyphens, at most 120 bytes (so <device>.<network>.<suffix> fits the
// 253 bytes of a DNS name with 63-byte labels).
func ValidDNSSuffix(s string) bool {
	if s == "" || len(s) > 120 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
