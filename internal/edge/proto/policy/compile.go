package policy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Member is a device of the network as the policy names it.
type Member struct {
	ID    string // device id, "dev_…"
	Label string // DNS label, "robot"
	Addr4 netip.Addr
	Addr6 netip.Addr
	Tags  []string // "tag:server" (or "server")
}

// Directory resolves the names a policy uses.
type Directory interface {
	// Lookup finds a member by device id or DNS label.
	Lookup(name string) (Member, bool)
	// Tagged lists the members carrying a tag ("tag:server").
	Tagged(tag string) []Member
}

// NewDirectory indexes members by id, label and tag.
func NewDirectory(members []Member) Directory {
	d := directory{names: map[string]Member{}, tags: map[string][]Member{}}
	for _, m := range members {
		for _, n := range []string{m.ID, m.Label} {
			if n != "" {
				d.names[n] = m
			}
		}
		for _, t := range m.Tags {
			t = "tag:" + strings.TrimPrefix(t, "tag:")
			d.tags[t] = append(d.tags[t], m)
		}
	}
	return d
}

type directory struct {
	names map[string]Member
	tags  map[string][]Member
}

func (d directory) Lookup(name string) (Member, bool) { m, ok := d.names[name]; return m, ok }
func (d directory) Tagged(tag string) []Member        { return d.tags[tag] }

// Validate checks every member and tag the policy names against dir: the
// first unknown one (the groups' first, then the rules') is an *Error.
func (p *Policy) Validate(dir Directory) error {
	if p == nil {
		return nil
	}
	for _, s := range p.sels {
		if s.kind == kName {
			if _, ok := dir.Lookup(s.name); !ok {
				return s.pos.at("unknown member %q", s.name)
			}
		}
		if s.kind == kTag && len(dir.Tagged(s.name)) == 0 {
			return s.pos.at("no member has tag %q", s.name)
		}
	}
	return nil
}

// MaxCompiled bounds a compiled filter: the sum over rules of their
// source prefixes (a group of many members counts each member).
const MaxCompiled = 1 << 20

// Compile builds the filter for the receiving device self (its Addr4 and
// Addr6), which carries routes (subnet routes it serves; 0.0.0.0/0 and
// ::/0 when it serves as exit node). An absent policy compiles to
// AllowAll. Names dir no longer knows match nothing.
func (p *Policy) Compile(dir Directory, self Member, routes []netip.Prefix) (*Filter, error) {
	if p.AllowsAll() {
		return AllowAll(), nil
	}
	own := addrs(nil, self)
	if len(own) == 0 {
		return nil, errors.New("policy: the receiving device has no address")
	}
	for _, r := range routes {
		if !r.IsValid() {
			return nil, fmt.Errorf("policy: invalid route %v", r)
		}
		own = append(own, r.Masked())
	}
	res := resolver{p: p, dir: dir, memo: map[string][]netip.Prefix{}}
	f := &Filter{ct: NewConntrack(0, nil)}
	refs := [2]map[netip.Prefix][]int32{{}, {}}
	total := 0
	for _, r := range p.rules {
		var tg [2][]target
		for _, d := range r.dst {
			for _, dp := range res.resolve(d) {
				for _, o := range own {
					if dp.Overlaps(o) {
						x := dp
						if o.Bits() > dp.Bits() {
							x = o
						}
						first, last := span(x)
						tg[fam(x)] = append(tg[fam(x)], target{first, last, d.ports})
					}
				}
			}
		}
		src := map[netip.Prefix]bool{}
		for _, s := range r.src {
			for _, sp := range res.resolve(s) {
				src[sp] = true
			}
		}
		line := [2]int32{-1, -1}
		for sp := range src {
			fm := fam(sp)
			if len(tg[fm]) == 0 {
				continue
			}
			if line[fm] < 0 {
				line[fm] = int32(len(f.lines))
				f.lines = append(f.lines, ruleLine{r.protos, tg[fm]})
			}
			refs[fm][sp] = append(refs[fm][sp], line[fm])
			if total++; total > MaxCompiled {
				return nil, fmt.Errorf("policy: more than %d compiled entries for this device", MaxCompiled)
			}
		}
	}
	for fm := range f.tab {
		f.tab[fm] = build(refs[fm])
	}
	return f, nil
}

func fam(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

type resolver struct {
	p    *Policy
	dir  Directory
	memo map[string][]netip.Prefix // groups and tags
}

var anyPrefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

func (r *resolver) resolve(s *sel) []netip.Prefix {
	switch s.kind {
	case kAny:
		return anyPrefixes
	case kPrefix:
		return []netip.Prefix{s.pfx}
	case kName:
		m, ok := r.dir.Lookup(s.name)
		if !ok {
			return nil
		}
		return addrs(nil, m)
	}
	if out, ok := r.memo[s.name]; ok {
		return out
	}
	var out []netip.Prefix
	if s.kind == kTag {
		for _, m := range r.dir.Tagged(s.name) {
			out = addrs(out, m)
		}
	} else {
		for _, e := range r.p.groups[s.name] {
			out = append(out, r.resolve(e)...)
		}
	}
	r.memo[s.name] = out
	return out
}

func addrs(out []netip.Prefix, m Member) []netip.Prefix {
	for _, a := range []netip.Addr{m.Addr4, m.Addr6} {
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

// u128 is an address as a number; IPv4 addresses are below 2^32 (each
// family has its own table).
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// span is the first and last address of a (masked) prefix.
func span(p netip.Prefix) (first, last u128) {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		v := uint64(binary.BigEndian.Uint32(b[:]))
		return u128{0, v}, u128{0, v | (1<<(32-p.Bits()) - 1)}
	}
	b := p.Addr().As16()
	first = u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	bits := p.Bits()
	hostHi, hostLo := ^uint64(0)>>min(bits, 64), ^uint64(0)>>max(bits-64, 0)
	if bits >= 64 {
		hostHi = 0
	}
	return first, u128{first.hi | hostHi, first.lo | hostLo}
}

type target struct {
	first, last u128
	ports       []portRange // nil: every port, and protocols without ports
}

// ruleLine is one rule for one address family on this device.
type ruleLine struct {
	protos  uint8
	targets []target
}

// node is one source prefix: nodes are sorted by first address, then
// length, and each points at the closest node enclosing it.
type node struct {
	first, last u128
	parent      int32
	lines       []int32
}

type table []node

func build(refs map[netip.Prefix][]int32) table {
	ps := make([]netip.Prefix, 0, len(refs))
	for p := range refs {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	t := make(table, len(ps))
	var stack []int32
	for i, p := range ps {
		n := &t[i]
		n.first, n.last = span(p)
		n.lines = slices.Clip(refs[p])
		for len(stack) > 0 && t[stack[len(stack)-1]].last.less(n.first) {
			stack = stack[:len(stack)-1]
		}
		n.parent = -1
		if len(stack) > 0 {
			n.parent = stack[len(stack)-1]
		}
		stack = append(stack, int32(i))
	}
	return t
}

// allow reports whether a rule lets src reach dst with the protocol class
// and port (of TCP or UDP).
func (f *Filter) allow(fm int, src, dst u128, class uint8, port uint16) bool {
	t, hasPort := f.tab[fm], class&(pTCP|pUDP) != 0
	lo, hi := 0, len(t)
	for lo < hi { // the last node starting at or before src
		m := int(uint(lo+hi) >> 1)
		if src.less(t[m].first) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	// The nodes holding src are lo-1 or among its ancestors, which all
	// start at or before src.
	for i := lo - 1; i >= 0; i = int(t[i].parent) {
		if t[i].last.less(src) {
			continue
		}
		for _, li := range t[i].lines {
			l := &f.lines[li]
			if l.protos&class == 0 {
				continue
			}
			for j := range l.targets {
				tg := &l.targets[j]
				if dst.less(tg.first) || tg.last.less(dst) {
					continue
				}
				if tg.ports == nil {
					return true
				}
				for _, r := range tg.ports {
					if hasPort && r.lo <= port && port <= r.hi {
						return true
					}
				}
			}
		}
	}
	return false
}
