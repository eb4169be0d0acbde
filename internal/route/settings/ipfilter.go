package settings

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// Caps of the IP filter.
const (
	MaxCIDRs    = 1024 // entries per list
	maxCIDRText = 64   // characters per entry
)

// Scopes an IP filter applies to.
const (
	ScopeGateway    = "gateway"    // the gateway endpoints (/v1 …, the dialects' paths)
	ScopeManagement = "management" // the management API under /api/ and the dashboard
)

// IPFilter is the IP filter document. With Enabled, a request in one of
// the ApplyTo scopes from an address in Block is refused; else, when
// Allow is not empty, one from an address outside it is refused. Block
// wins over Allow. Entries are CIDRs, IPv4 or IPv6; a bare address is a
// /32 or /128. A loopback client (the gateway host itself) keeps the
// management scope unless a Block entry lying within the loopback range
// names it: a broad allow or block list cannot lock the host out.
type IPFilter struct {
	Enabled bool     `json:"enabled"`
	Allow   []string `json:"allow"`
	Block   []string `json:"block"`
	ApplyTo []string `json:"applyTo"`
}

// compiled is a filter ready to screen requests.
type compiled struct {
	doc                 IPFilter
	allow, block        []netip.Prefix
	gateway, management bool
}

// refuses reports whether the filter refuses a client at addr, for the
// management side or the gateway's.
func (c *compiled) refuses(addr netip.Addr, management bool) bool {
	if !c.doc.Enabled || (management && !c.management) || (!management && !c.gateway) {
		return false
	}
	if !addr.IsValid() {
		return true // no address to judge: refused while a filter applies
	}
	addr = addr.Unmap()
	for _, p := range c.block {
		if p.Contains(addr) && (!management || !addr.IsLoopback() || loopbackPrefix(p)) {
			return true
		}
	}
	if management && addr.IsLoopback() {
		return false
	}
	if len(c.allow) == 0 {
		return false
	}
	for _, p := range c.allow {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// loopbackPrefix reports whether every address of p is a loopback one:
// a block entry that names the gateway host on purpose.
func loopbackPrefix(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() >= 8 && p.Masked().Addr().As4()[0] == 127
	}
	return p.Bits() == 128 && p.Addr() == netip.IPv6Loopback()
}

// parseCIDR reads one entry: a CIDR or a bare address.
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxCIDRText {
		return netip.Prefix{}, fmt.Errorf("not a CIDR")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR")
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("is an IPv4-mapped IPv6 CIDR: write the IPv4 CIDR")
	}
	return p.Masked(), nil
}

// compile validates a filter document and normalises it: entries as
// canonical CIDRs, without duplicates; a missing applyTo means both
// scopes.
func compile(f IPFilter) (*compiled, error) {
	c := &compiled{}
	lists := []struct {
		name string
		in   []string
		out  *[]netip.Prefix
		norm *[]string
	}{{"allow", f.Allow, &c.allow, &c.doc.Allow}, {"block", f.Block, &c.block, &c.doc.Block}}
	for _, l := range lists {
		if len(l.in) > MaxCIDRs {
			return nil, httpx.BadRequest("%q has %d entries, more than %d", l.name, len(l.in), MaxCIDRs)
		}
		*l.norm = []string{}
		seen := map[netip.Prefix]bool{}
		for i, s := range l.in {
			p, err := parseCIDR(s)
			if err != nil {
				shown := s
				if len(shown) > maxCIDRText {
					shown = shown[:maxCIDRText] + "…"
				}
				return nil, httpx.BadRequest("%s[%d] %q: %v", l.name, i, shown, err)
			}
			if !seen[p] {
				seen[p] = true
				*l.out = append(*l.out, p)
				*l.norm = append(*l.norm, p.String())
			}
		}
	}
	applyTo := f.ApplyTo
	if applyTo == nil {
		applyTo = []string{ScopeGateway, ScopeManagement}
	}
	if len(applyTo) == 0 {
		return nil, httpx.BadRequest(`"applyTo" names no scope: list "gateway" and/or "management", or leave it out for both`)
	}
	if len(applyTo) > 16 {
		return nil, httpx.BadRequest(`"applyTo" lists "gateway" and/or "management"`)
	}
	c.doc.ApplyTo = []string{}
	for i, sc := range applyTo {
		switch sc {
		case ScopeGateway:
			c.gateway = true
		case ScopeManagement:
			c.management = true
		default:
			return nil, httpx.BadRequest(`applyTo[%d] %q: must be "gateway" or "management"`, i, sc)
		}
		if !slices.Contains(c.doc.ApplyTo, sc) {
			c.doc.ApplyTo = append(c.doc.ApplyTo, sc)
		}
	}
	c.doc.Enabled = f.Enabled
	return c, nil
}

// clientAddr is the client's address as the trusted proxies say
// (httpx.ClientIP); invalid when it cannot be read.
func (s *Service) clientAddr(r *http.Request) netip.Addr {
	a, err := netip.ParseAddr(httpx.ClientIP(r, s.trusted))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// screen refuses a request the IP filter refuses (feature.Module.Screen).
func (s *Service) screen(r *http.Request, management func(*http.Request) bool) error {
	c := s.filter.Load()
	if !c.doc.Enabled {
		return nil
	}
	addr := s.clientAddr(r)
	if !c.refuses(addr, management(r)) {
		return nil
	}
	return httpx.Errorf(http.StatusForbidden, "ip_blocked", "requests from %s are refused by this gateway's IP filter", addr)
}

// IPFilter is the filter in force on this replica.
func (s *Service) IPFilter() IPFilter { return s.filter.Load().doc }

// loadFilter reads the stored filter and puts it in force; an unreadable
// stored value is an error (the gateway does not start with a filter it
// cannot apply).
func (s *Service) loadFilter(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, _, err := s.store.Setting(ctx, KeyIPFilter)
	if err != nil {
		return err
	}
	return s.install(raw)
}

// install puts the stored value raw in force, unless it is the one in
// force already. Called with mu held.
func (s *Service) install(raw string) error {
	if raw == s.raw && s.filter.Load() != nil {
		return nil
	}
	c := &compiled{}
	if raw != "" {
		var f IPFilter
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return fmt.Errorf("settings: the stored IP filter is unreadable: %w", err)
		}
		var err error
		if c, err = compile(f); err != nil {
			return fmt.Errorf("settings: the stored IP filter is invalid: %w", err)
		}
	}
	s.filter.Store(c)
	s.raw = raw
	return nil
}

// follow reads the stored filter every Poll until ctx ends, so that a
// change made through another replica is in force here within a second.
// A failed read or an unreadable value keeps the filter in force.
func (s *Service) follow(ctx context.Context) error {
	t := time.NewTicker(s.opt.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.loadFilter(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("IP filter reload failed; the filter in force stays", "err", err)
			}
		}
	}
}

func (s *Service) getIPFilter(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	raw, _, err := s.store.Setting(r.Context(), KeyIPFilter)
	if err == nil {
		err = s.install(raw)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, s.IPFilter())
	return nil
}

// putIPFilter replaces the filter. It refuses (409) a filter that would
// refuse the caller's own management requests: the change could not be
// undone from where it was made.
func (s *Service) putIPFilter(w http.ResponseWriter, r *http.Request) error {
	var doc map[string]json.RawMessage
	if err := httpx.DecodeJSON(w, r, &doc, MaxBody); err != nil {
		return err
	}
	if doc == nil {
		return httpx.BadRequest("the body must be a JSON object (enabled, allow, block, applyTo)")
	}
	for n := range doc {
		switch n {
		case "enabled", "allow", "block", "applyTo":
		default:
			return httpx.BadRequest(`unknown field %q (the IP filter has "enabled", "allow", "block" and "applyTo")`, n)
		}
	}
	if _, ok := doc["enabled"]; !ok {
		return httpx.BadRequest(`"enabled" (a boolean) is required`)
	}
	var f IPFilter
	for n, v := range doc {
		var err error
		switch n {
		case "enabled":
			err = json.Unmarshal(v, &f.Enabled)
		case "allow":
			err = json.Unmarshal(v, &f.Allow)
		case "block":
			err = json.Unmarshal(v, &f.Block)
		case "applyTo":
			err = json.Unmarshal(v, &f.ApplyTo)
		}
		if err != nil || string(v) == "null" && n == "enabled" {
			kind := "a list of strings"
			if n == "enabled" {
				kind = "a boolean"
			}
			return httpx.BadRequest("%q must be %s", n, kind)
		}
	}
	c, err := compile(f)
	if err != nil {
		return err
	}
	if addr := s.clientAddr(r); c.refuses(addr, true) {
		return httpx.Errorf(http.StatusConflict, "lockout",
			"this filter would refuse your own address %s for management, so it could not be changed back from here: allow it, or make the change from the gateway host", addr)
	}
	b, err := json.Marshal(c.doc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.SetSetting(r.Context(), KeyIPFilter, string(b)); err != nil {
		return err
	}
	if err := s.install(string(b)); err != nil {
		return err
	}
	s.log.Info("IP filter changed", "enabled", c.doc.Enabled, "allow", len(c.allow), "block", len(c.block), "apply_to", c.doc.ApplyTo)
	httpx.WriteJSON(w, http.StatusOK, c.doc)
	return nil
}
