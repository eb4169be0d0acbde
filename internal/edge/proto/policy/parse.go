package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a document.
const (
	MaxSize      = 256 << 10 // bytes
	MaxRules     = 1000
	MaxGroups    = 1000
	MaxSelectors = 10000 // sources, destinations and group entries in all
	Version      = 1     // the document version this package reads
)

// Error is what Parse and Validate fail with: where in the document, and
// what is wrong there.
type Error struct {
	Path   string // JSON path, e.g. rules[3].dst[1] or groups["group:ops"][0]; "" is the document
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based, in characters
	Msg    string
}

// at returns e with the message.
func (e Error) at(format string, a ...any) *Error {
	e.Msg = fmt.Sprintf(format, a...)
	return &e
}

func (e *Error) Error() string {
	s := e.Path
	if s == "" {
		s = "policy"
	}
	if e.Line > 0 {
		s += fmt.Sprintf(" (line %d, column %d)", e.Line, e.Column)
	}
	return s + ": " + e.Msg
}

// Policy is a parsed document. A nil *Policy is an absent policy.
type Policy struct {
	all    bool // no rules at all: allow everything
	rules  []rule
	groups map[string][]*sel
	sels   []*sel // every selector: groups', then rules'
}

type rule struct {
	protos   uint8 // protocol classes (pTCP …)
	src, dst []*sel
}

// Protocol classes.
const (
	pTCP uint8 = 1 << iota
	pUDP
	pICMP
	pOther
	pAll = pTCP | pUDP | pICMP | pOther
)

type selKind uint8

const (
	kAny selKind = iota
	kName
	kGroup
	kTag
	kPrefix
)

// sel is one source, destination or group entry, with where it was written.
type sel struct {
	kind  selKind
	name  string // member, "group:x" or "tag:x"
	pfx   netip.Prefix
	ports []portRange // destinations; nil is "*"
	text  string
	pos   Error // Path, Line, Column
}

type portRange struct{ lo, hi uint16 }

// AllowsAll reports whether p is an absent policy, which allows everything.
func (p *Policy) AllowsAll() bool { return p == nil || p.all }

// Parse reads a policy document.
func Parse(b []byte) (*Policy, error) {
	if len(b) > MaxSize {
		return nil, &Error{Msg: fmt.Sprintf("the document is %d bytes, more than %d", len(b), MaxSize)}
	}
	p := &Policy{all: true, groups: map[string][]*sel{}}
	if len(bytes.TrimSpace(b)) == 0 {
		return p, nil
	}
	ps := &parser{b: b, dec: json.NewDecoder(bytes.NewReader(b)), line: 1}
	ps.dec.UseNumber()
	root, err := ps.value("", 0)
	if rest := b[ps.dec.InputOffset():]; err == nil && len(bytes.TrimSpace(rest)) > 0 {
		err = ps.pos(len(b)-len(bytes.TrimLeft(rest, " \t\r\n")), "").at("unexpected data after the document")
	}
	if err == nil {
		err = p.document(root)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// parser reads the document into a tree of jnodes that know where they
// were written, then the tree into a Policy.
type parser struct {
	b              []byte
	dec            *json.Decoder
	off, line, col int // cursor: an offset, its line and (0-based, in runes) column
}

// jnode is a JSON value: tok is '{' or '[' for an object or list (keys,
// kids), else the value.
type jnode struct {
	tok        json.Token
	pos, keyAt Error // where the value and (in an object) its key start
	keys       []string
	kids       []*jnode
}

// pos is the location of byte offset off.
func (ps *parser) pos(off int, path string) Error {
	if off < ps.off {
		ps.off, ps.line, ps.col = 0, 1, 0
	}
	for ; ps.off < off; ps.off++ {
		switch c := ps.b[ps.off]; {
		case c == '\n':
			ps.line, ps.col = ps.line+1, 0
		case utf8.RuneStart(c):
			ps.col++
		}
	}
	return Error{Path: path, Line: ps.line, Column: ps.col + 1}
}

// token reads the next token and where it starts.
func (ps *parser) token(path string) (json.Token, Error, error) {
	off := int(ps.dec.InputOffset())
	for off < len(ps.b) && strings.IndexByte(" \t\r\n,:", ps.b[off]) >= 0 {
		off++
	}
	t, err := ps.dec.Token()
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return nil, Error{}, ps.pos(min(int(se.Offset), len(ps.b)), path).at("%s", strings.TrimPrefix(se.Error(), "json: "))
	case err != nil:
		return nil, Error{}, ps.pos(len(ps.b), path).at("unexpected end of the document")
	}
	return t, ps.pos(off, path), nil
}

func (ps *parser) value(path string, depth int) (*jnode, error) {
	t, pos, err := ps.token(path)
	if err != nil {
		return nil, err
	}
	if depth > 3 && (t == json.Delim('{') || t == json.Delim('[')) { // deeper than any field
		return nil, pos.at("nested too deep")
	}
	n, seen := &jnode{tok: t, pos: pos}, map[string]bool(nil)
	for i := 0; (t == json.Delim('{') || t == json.Delim('[')) && ps.dec.More(); i++ {
		kp, keyAt := fmt.Sprintf("%s[%d]", path, i), Error{}
		if t == json.Delim('{') {
			k, at, err := ps.token(path)
			if err != nil {
				return nil, err
			}
			key, _ := k.(string)
			switch {
			case !validName(key) || path == "groups":
				kp = fmt.Sprintf("%s[%q]", path, key)
			case path == "":
				kp = key
			default:
				kp = path + "." + key
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			if keyAt, keyAt.Path = at, kp; seen[key] {
				return nil, keyAt.at("duplicate field %q", key)
			}
			seen[key], n.keys = true, append(n.keys, key)
		}
		kid, err := ps.value(kp, depth+1)
		if err != nil {
			return nil, err
		}
		kid.keyAt, n.kids = keyAt, append(n.kids, kid)
	}
	if t == json.Delim('{') || t == json.Delim('[') {
		_, _, err = ps.token(path)
	}
	return n, err
}

// fields checks that n is an object of the named fields and returns them.
func fields(n *jnode, names ...string) (map[string]*jnode, error) {
	if n.tok != json.Delim('{') {
		return nil, n.pos.at("want an object")
	}
	m := map[string]*jnode{}
	for i, k := range n.keys {
		if !slices.Contains(names, k) {
			return nil, n.kids[i].keyAt.at("unknown field %q", k)
		}
		m[k] = n.kids[i]
	}
	return m, nil
}

// strs checks that n is a list of strings.
func strs(n *jnode) ([]*jnode, error) {
	if n.tok != json.Delim('[') {
		return nil, n.pos.at("want a list")
	}
	for _, k := range n.kids {
		if _, ok := k.tok.(string); !ok {
			return nil, k.pos.at("want a string")
		}
	}
	return n.kids, nil
}

func (p *Policy) document(root *jnode) error {
	if root.tok == nil {
		return nil
	}
	f, err := fields(root, "version", "groups", "rules")
	if err != nil {
		return err
	}
	if v := f["version"]; v != nil && v.tok != json.Number(strconv.Itoa(Version)) {
		return v.pos.at("unsupported version %v; this reads version %d", v.tok, Version)
	}
	nests := map[string]bool{} // groups holding groups
	if g := f["groups"]; g != nil && g.tok != nil {
		if g.tok != json.Delim('{') {
			return g.pos.at("want an object")
		}
		if len(g.kids) > MaxGroups {
			return g.kids[MaxGroups].keyAt.at("more than %d groups", MaxGroups)
		}
		for i, name := range g.keys {
			if !strings.HasPrefix(name, "group:") || !validName(name[len("group:"):]) {
				return g.kids[i].keyAt.at("a group is named group:<name>, the name 1 to 64 of A-Z a-z 0-9 _ -")
			}
			entries, err := strs(g.kids[i])
			if err != nil {
				return err
			}
			p.groups[name] = []*sel{}
			for _, n := range entries {
				s, err := p.selector(n, false)
				if err == nil && s.kind == kAny {
					err = s.pos.at("a group cannot hold *")
				}
				if err != nil {
					return err
				}
				p.groups[name] = append(p.groups[name], s)
				nests[name] = nests[name] || s.kind == kGroup
			}
		}
	}
	if r := f["rules"]; r != nil && r.tok != nil {
		if r.tok != json.Delim('[') {
			return r.pos.at("want a list")
		}
		if len(r.kids) > MaxRules {
			return r.kids[MaxRules].pos.at("more than %d rules", MaxRules)
		}
		p.all = false
		for _, n := range r.kids {
			if err := p.rule(n); err != nil {
				return err
			}
		}
	}
	for _, s := range p.sels {
		if _, ok := p.groups[s.name]; s.kind == kGroup && !ok {
			return s.pos.at("unknown group %q", s.name)
		}
		if s.kind == kGroup && nests[s.name] && strings.HasPrefix(s.pos.Path, "groups") {
			return s.pos.at("%s holds groups itself; groups nest one level deep", s.name)
		}
	}
	return nil
}

func (p *Policy) rule(n *jnode) error {
	f, err := fields(n, "action", "src", "dst", "proto")
	if err != nil {
		return err
	}
	r := rule{protos: pAll}
	if a := f["action"]; a == nil {
		return n.pos.at("missing \"action\"")
	} else if a.tok != "accept" {
		return a.pos.at("unknown action %v; the only action is \"accept\"", quote(a.tok))
	}
	if pr := f["proto"]; pr != nil {
		var ok bool
		if r.protos, ok = map[any]uint8{"tcp": pTCP, "udp": pUDP, "icmp": pICMP, "*": pAll}[pr.tok]; !ok {
			return pr.pos.at("unknown proto %v; want tcp, udp, icmp or *", quote(pr.tok))
		}
	}
	for _, key := range []string{"src", "dst"} {
		if f[key] == nil || f[key].tok == json.Delim('[') && len(f[key].kids) == 0 {
			return n.pos.at("missing or empty %q", key)
		}
		entries, err := strs(f[key])
		if err != nil {
			return err
		}
		for _, e := range entries {
			s, err := p.selector(e, key == "dst")
			if err != nil {
				return err
			}
			if key == "src" {
				r.src = append(r.src, s)
			} else if r.dst = append(r.dst, s); s.ports != nil && r.protos == pICMP {
				return s.pos.at("icmp has no ports; write %s:*", s.text[:strings.LastIndexByte(s.text, ':')])
			}
		}
	}
	p.rules = append(p.rules, r)
	return nil
}

func quote(t json.Token) string {
	if s, ok := t.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(t)
}

// selector parses a source, destination (dst) or group entry.
func (p *Policy) selector(n *jnode, dst bool) (*sel, error) {
	if len(p.sels) == MaxSelectors {
		return nil, n.pos.at("more than %d selectors", MaxSelectors)
	}
	s := n.tok.(string)
	e := &sel{text: s, pos: n.pos}
	p.sels = append(p.sels, e)
	host, msg := s, ""
	if dst {
		i := strings.LastIndexByte(s, ':')
		_, err1 := netip.ParseAddr(s)
		_, err2 := netip.ParsePrefix(s)
		if err1 == nil || err2 == nil || i < 0 || s[:i] == "group" || s[:i] == "tag" {
			return e, e.pos.at("destination %q has no ports; write %s:* or %s:<ports>", s, bracket(s), bracket(s))
		}
		host = s[:i]
		if host != "" && host[0] == '[' && host[len(host)-1] == ']' && strings.Contains(host, ":") {
			host = host[1 : len(host)-1]
		}
		if e.ports, msg = parsePorts(s[i+1:]); msg != "" {
			return e, e.pos.at("%s", msg)
		}
	}
	switch {
	case host == "*":
		e.kind = kAny
	case strings.HasPrefix(host, "group:") || strings.HasPrefix(host, "tag:"):
		e.kind, e.name = kGroup, host
		if host[0] == 't' {
			e.kind = kTag
		}
		if !validName(host[strings.IndexByte(host, ':')+1:]) {
			msg = fmt.Sprintf("invalid name %q: 1 to 64 of A-Z a-z 0-9 _ - after the colon", host)
		}
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		switch {
		case err != nil:
			msg = fmt.Sprintf("invalid prefix %q", host)
		case p.Addr().Is4In6():
			msg = fmt.Sprintf("write the IPv4 prefix %q in IPv4 form", host)
		case p.Masked() != p:
			msg = fmt.Sprintf("prefix %s has host bits set; write %s", p, p.Masked())
		}
		e.kind, e.pfx = kPrefix, p
	default:
		if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" {
			e.kind, e.pfx = kPrefix, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		} else if e.kind, e.name = kName, host; !validName(host) {
			msg = fmt.Sprintf("invalid selector %q: want *, a member, group:<name>, tag:<name>, an address or a prefix", host)
		}
	}
	if msg != "" {
		return e, e.pos.at("%s", msg)
	}
	return e, nil
}

func bracket(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return "[" + s + "]"
	}
	return s
}

// ValidName reports whether s is a name a group or tag may have after
// its "group:" or "tag:" prefix.
func ValidName(s string) bool { return validName(s) }

func validName(s string) bool {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	return s != "" && len(s) <= 64 && strings.Trim(s, chars) == ""
}

// parsePorts parses "*", "22", "80,443", "1000-2000"; nil is "*".
func parsePorts(s string) ([]portRange, string) {
	if s == "*" {
		return nil, ""
	}
	var rs []portRange
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		switch {
		case err1 != nil || err2 != nil:
			return nil, fmt.Sprintf("unknown port %q", part)
		case a > b:
			return nil, fmt.Sprintf("port range %q is reversed", part)
		}
		rs = append(rs, portRange{uint16(a), uint16(b)})
	}
	return rs, ""
}
