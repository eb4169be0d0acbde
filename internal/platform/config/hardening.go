package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a number of bytes, written as an integer or with a binary
// suffix (KiB, MiB, GiB; K, M, G mean the same).
type ByteSize int64

// ParseByteSize reads "4194304", "4MiB", "4M" or "512KiB".
func ParseByteSize(s string) (ByteSize, error) {
	v := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size in bytes (e.g. 4194304, 512KiB, 32MiB)", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML takes an integer or a string with a suffix.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

type byteSizeFlag struct{ p *ByteSize }

func (f byteSizeFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*f.p), 10)
}

func (f byteSizeFlag) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*f.p = v
	return nil
}

type listFlag struct{ p *[]string }

func (f listFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f listFlag) Set(s string) error {
	*f.p = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f.p = append(*f.p, v)
		}
	}
	return nil
}

// hardeningFlags registers the options that bound what the products
// expose: metrics, anonymous gateway access, management host names and
// upstream answers.
func hardeningFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, `address serving /metrics (loopback by default; "off": none)`)
	fs.Var((*secretFlag)(&cfg.MetricsToken), "metrics-token", "bearer token that also allows /metrics on the public listeners (default: not served there)")
	fs.BoolVar(&cfg.Route.AllowAnonymous, "allow-anonymous", cfg.Route.AllowAnonymous, "serve gateway requests without a key from any address (default: from the gateway host only); as REQUIRE_API_KEY=false")
	fs.Var(listFlag{&cfg.Route.AllowedHosts}, "route-allowed-hosts", `host names the management API answers under besides localhost, 127.0.0.1 and [::1] (HOST or HOST:PORT, comma-separated; "*": any)`)
	fs.Var(byteSizeFlag{&cfg.Route.UpstreamMaxBody}, "route-upstream-max-body", "largest non-streamed upstream answer (bytes, or with KiB/MiB/GiB)")
	fs.Var(byteSizeFlag{&cfg.Route.UpstreamMaxLine}, "route-upstream-max-line", "longest line of a streamed upstream answer (bytes, or with KiB/MiB/GiB)")
	fs.DurationVar(&cfg.Route.UpstreamIdleTimeout, "route-upstream-idle-timeout", cfg.Route.UpstreamIdleTimeout, "an upstream answer that sends nothing for this long, once started, fails")
	fs.DurationVar(&cfg.Route.ResponsesTTL, "route-responses-ttl", cfg.Route.ResponsesTTL, "how long a stored Responses conversation (previous_response_id) is kept")
	fs.Var(byteSizeFlag{&cfg.Route.ResponsesMaxBytes}, "route-responses-max-bytes", "largest stored Responses conversation (bytes of JSON, or with KiB/MiB/GiB); larger ones are not stored")
	fs.IntVar(&cfg.Route.ResponsesMaxPerKey, "route-responses-max-per-key", cfg.Route.ResponsesMaxPerKey, "stored Responses conversations per gateway key (its oldest evicted first)")
	fs.Var(byteSizeFlag{&cfg.Route.ResponsesMaxKeyBytes}, "route-responses-max-key-bytes", "bytes of stored Responses conversations per gateway key (its oldest evicted first)")
	fs.IntVar(&cfg.Route.ResponsesMax, "route-responses-max", cfg.Route.ResponsesMax, "stored Responses conversations in all (the oldest evicted first)")
	fs.Var(byteSizeFlag{&cfg.Route.ResponsesMaxTotalBytes}, "route-responses-max-total-bytes", "bytes of stored Responses conversations in all (the oldest evicted first)")
	fs.DurationVar(&cfg.Route.AuditMaxAge, "route-audit-max-age", cfg.Route.AuditMaxAge, "how long the compliance audit log keeps a management change")
	fs.IntVar(&cfg.Route.AuditMaxRows, "route-audit-max-rows", cfg.Route.AuditMaxRows, "most management changes the compliance audit log keeps (the oldest deleted first)")
}

// explicitAnonymous turns an explicit require_api_key=false (flag, env or
// file, the last source that sets it winning) into AllowAnonymous: only
// then are requests without a key served from any address.
func explicitAnonymous(fset *flag.FlagSet, path string, cfg *Config) error {
	var explicit *bool
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		var f struct {
			Route struct {
				RequireAPIKey *bool `yaml:"require_api_key"`
			} `yaml:"route"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("config: %s: %w", path, err)
		}
		explicit = f.Route.RequireAPIKey
	}
	fset.Visit(func(f *flag.Flag) {
		if f.Name == "require-api-key" {
			v := cfg.Route.RequireAPIKey
			explicit = &v
		}
	})
	if explicit != nil && !*explicit {
		cfg.Route.AllowAnonymous = true
	}
	return nil
}

func (c *Config) validateHardening() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("config: "+format, args...)) }
	if c.MetricsListen != "off" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad(`--metrics-listen %q is not HOST:PORT or "off"`, c.MetricsListen)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("--metrics-listen %q has an invalid port", c.MetricsListen)
		}
	}
	if c.Route.RequireAPIKey && c.Route.AllowAnonymous {
		bad("require_api_key and allow_anonymous (or REQUIRE_API_KEY=false) contradict each other")
	}
	for _, h := range c.Route.AllowedHosts {
		if h == "*" {
			continue
		}
		host := h
		if hh, _, err := net.SplitHostPort(h); err == nil {
			host = hh
		}
		if host == "" || strings.ContainsAny(h, "/ \t@?#") {
			bad("--route-allowed-hosts: %q is not a HOST or HOST:PORT", h)
		}
	}
	if c.Route.UpstreamMaxBody < 1<<10 {
		bad("--route-upstream-max-body must be at least 1KiB")
	}
	if c.Route.UpstreamMaxLine < 1<<10 {
		bad("--route-upstream-max-line must be at least 1KiB")
	}
	if c.Route.UpstreamIdleTimeout <= 0 {
		bad("--route-upstream-idle-timeout must be positive")
	}
	r := c.Route
	switch {
	case r.ResponsesTTL <= 0 || r.ResponsesMaxBytes <= 0 || r.ResponsesMaxPerKey <= 0 || r.ResponsesMaxKeyBytes <= 0 ||
		r.ResponsesMax <= 0 || r.ResponsesMaxTotalBytes <= 0:
		bad("--route-responses-ttl, -max-bytes, -max-per-key, -max-key-bytes, -max and -max-total-bytes must be positive")
	case r.ResponsesMaxBytes > r.ResponsesMaxKeyBytes || r.ResponsesMaxKeyBytes > r.ResponsesMaxTotalBytes:
		bad("stored responses: --route-responses-max-bytes <= --route-responses-max-key-bytes <= --route-responses-max-total-bytes")
	case r.ResponsesMaxPerKey > r.ResponsesMax:
		bad("stored responses: --route-responses-max-per-key must not exceed --route-responses-max")
	}
	if r.AuditMaxAge < time.Hour || r.AuditMaxRows < 100 || r.AuditMaxRows > 100_000_000 {
		bad("--route-audit-max-age must be at least 1h and --route-audit-max-rows 100 to 100000000")
	}
	return errs
}

// PermissionWarnings reports a data dir or master key file that users
// other than the owner can reach (they hold the database and the key
// that opens every sealed secret). Missing files are not reported.
func (c *Config) PermissionWarnings() []string {
	var out []string
	check := func(path string, max fs.FileMode, what string) {
		st, err := os.Stat(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				out = append(out, fmt.Sprintf("cannot check the %s %s: %v", what, path, err))
			}
			return
		}
		if perm := st.Mode().Perm(); perm&^max != 0 {
			out = append(out, fmt.Sprintf("the %s %s has mode %04o: other users may read it; run chmod %04o %s", what, path, perm, max, path))
		}
	}
	check(c.DataDir, 0o700, "data directory")
	if c.MasterKey == "" {
		check(filepath.Join(c.DataDir, "master.key"), 0o600, "master key file")
	}
	return out
}

// TrustProxyWarnings reports a --trust-proxy that believes
// X-Forwarded-For from a great many addresses: "true" (loopback and every
// private range) or a network larger than an IPv4 /8 or an IPv6 /32. Any
// client inside such a network can claim another client IP, and so
// escape the per-IP limits and put any address on the approval page.
func (c *Config) TrustProxyWarnings() []string {
	v := strings.ToLower(strings.TrimSpace(c.TrustProxy))
	if v == "true" || v == "1" {
		return []string{"--trust-proxy=true believes X-Forwarded-For from loopback and every private range (" +
			strings.Join(privateNets, ", ") + "): any client there can claim any client IP; list your proxies' addresses instead"}
	}
	var out []string
	for _, p := range c.TrustedProxies() {
		if (p.Addr().Is4() && p.Bits() < 8) || (p.Addr().Is6() && p.Bits() < 32) {
			out = append(out, fmt.Sprintf("--trust-proxy %s is a very broad network: any client in it can claim any client IP; list your proxies' addresses instead", p))
		}
	}
	return out
}
