package admin

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// A web page open in the operator's browser reaches the gateway in two
// ways: "simple" cross-site requests (form posts with urlencoded,
// multipart or text/plain bodies, fetches without a body or custom
// headers), which carry the operator's cookies for a same-site page and
// need no CORS preflight; and DNS rebinding (its own host name made to
// resolve to the gateway), after which it is "same origin" with itself.
// The checks below refuse both before any management handler runs:
//
//   - the Host must name this gateway: a loopback name (localhost,
//     127.0.0.1, [::1], any port) or one of the configured allowed hosts
//     (421 otherwise: a rebinding page's Host is its own name);
//   - an Origin, when sent, must be the Host's own origin — with the
//     request's scheme, when that is known — and a Sec-Fetch-Site, when
//     sent, same-origin or none (403);
//   - POST, PUT and PATCH must carry Content-Type: application/json (or,
//     on the one upload route, the file types it names), which a page of
//     another site cannot send without a preflight the gateway never
//     grants (415).

// loopbackNames are the host names the management API always answers
// under.
var loopbackNames = map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}

// hostSet is the allow-list of Host header values.
type hostSet struct {
	any       bool
	names     map[string]bool // host, any port
	hostPorts map[string]bool // host:port
}

func newHostSet(list []string) hostSet {
	h := hostSet{names: map[string]bool{}, hostPorts: map[string]bool{}}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		switch host, port, err := net.SplitHostPort(e); {
		case e == "*":
			h.any = true
		case err == nil:
			h.hostPorts[net.JoinHostPort(strings.TrimSuffix(host, "."), port)] = true
		case e != "":
			h.names[strings.TrimSuffix(strings.Trim(e, "[]"), ".")] = true
		}
	}
	return h
}

// splitHost returns the lower-case host name (without brackets or a
// trailing dot) and the port of a Host header value.
func splitHost(hostport string) (host, port string) {
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	return strings.TrimSuffix(strings.Trim(host, "[]"), "."), port
}

// allowed reports whether a Host header names this gateway.
func (h hostSet) allowed(hostport string) bool {
	host, port := splitHost(hostport)
	switch {
	case host == "":
		return false
	case loopbackNames[host], h.any, h.names[host]:
		return true
	}
	return port != "" && h.hostPorts[net.JoinHostPort(host, port)]
}

// sameOrigin reports whether an Origin header value is the origin of a
// request to hostport made under scheme ("http", "https", or "" when the
// request's scheme is not known: a plain listener that may sit behind a
// proxy terminating TLS). Default ports (80, 443) are left out on both
// sides, since a proxy terminating TLS forwards the Host without one.
func sameOrigin(origin, hostport, scheme string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return false
	}
	if scheme != "" && u.Scheme != scheme {
		return false
	}
	oh, op := splitHost(u.Host)
	hh, hp := splitHost(hostport)
	if op == "80" || op == "443" {
		op = ""
	}
	if hp == "80" || hp == "443" {
		hp = ""
	}
	return oh != "" && oh == hh && op == hp
}

// scheme returns the scheme the client used, when it is known: the
// X-Forwarded-Proto of a trusted proxy (its first entry, the one the
// client-facing proxy set), else "https" for TLS on the listener; ""
// when neither says (a plain listener may sit behind a proxy that
// terminates TLS without saying so).
func (g *Guard) scheme(r *http.Request) string {
	if xfp := r.Header.Get("X-Forwarded-Proto"); xfp != "" && httpx.TrustedPeer(r, g.opt.TrustProxy) {
		first, _, _ := strings.Cut(xfp, ",")
		switch s := strings.ToLower(strings.TrimSpace(first)); s {
		case "http", "https":
			return s
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return ""
}

// crossSite returns why r may come from a web page of another site (or
// a rebinding one), or nil.
func (g *Guard) crossSite(r *http.Request) error {
	if !g.hosts.allowed(r.Host) {
		return httpx.Errorf(http.StatusMisdirectedRequest, "host_not_allowed",
			"this gateway does not answer management requests for host %q: use localhost, or add the name with --route-allowed-hosts (OMNI_ROUTE_ALLOWED_HOSTS)", r.Host)
	}
	return g.crossOrigin(r)
}

// crossOrigin returns why r was sent by a page of another site or
// origin (its Sec-Fetch-Site or Origin), or nil.
func (g *Guard) crossOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return httpx.Forbidden("management requests from another site's pages are refused (Sec-Fetch-Site: %s)", site)
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host, g.scheme(r)) {
		return httpx.Forbidden("management requests from another origin's pages are refused (Origin: %s)", o)
	}
	return nil
}

// jsonTypes are the body types management writes accept.
var jsonTypes = []string{"application/json"}

// bodyType refuses a POST, PUT or PATCH whose Content-Type is not one of
// types (a +json type counts as application/json).
func bodyType(r *http.Request, types []string) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		if strings.HasSuffix(mt, "+json") {
			mt = "application/json"
		}
		for _, t := range types {
			if mt == t {
				return nil
			}
		}
	}
	return httpx.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
		"management %s requests need Content-Type: %s, even without a body (curl: -H 'Content-Type: application/json')", r.Method, strings.Join(types, " or "))
}

// checked runs h only for requests no other site's page could have made:
// an allowed Host, no cross-site Origin or Sec-Fetch-Site, and for
// writes a body type of types.
func (g *Guard) checked(h httpx.HandlerFunc, types []string) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := g.crossSite(r); err != nil {
			return err
		}
		if err := bodyType(r, types); err != nil {
			return err
		}
		return h(w, r)
	}
}

// relayHeaders are what proxies, load balancers and CDNs add when they
// relay a request (canonical spellings). A request carrying any of them
// was relayed, so its loopback peer is a proxy, not the client.
// X-Forwarded-For is judged apart (FromGatewayHost).
var relayHeaders = []string{
	"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Server",
	"X-Real-Ip", "Via", "Cf-Connecting-Ip", "True-Client-Ip", "X-Client-Ip", "Fastly-Client-Ip",
	"X-Original-Forwarded-For", "X-Cluster-Client-Ip",
}

// FromGatewayHost reports a request made on the gateway host itself. The
// gateway serves such requests without a key when keys are not required,
// so every condition must hold:
//
//   - the peer is a loopback address;
//   - the request names the gateway by a loopback name (localhost,
//     127.0.0.1, [::1], any port) in its Host — strictly, whatever the
//     management allow-list says: a public name (or any name, with an
//     allowed-hosts entry of "*") is what a reverse proxy forwarding the
//     client's Host sends;
//   - it carries none of the headers a relaying proxy adds (relayHeaders),
//     and no X-Forwarded-For unless its peer is a trusted proxy
//     (TrustProxy) and every entry a loopback address (a local client
//     through a local proxy; a forged first entry does not count);
//   - no web page of another site or a rebinding one sent it (crossSite).
//
// A reverse proxy on the gateway host that forwards with none of these
// (nginx's proxy_pass sends Host 127.0.0.1:20128 and no X-Forwarded-For
// by default) cannot be told from a local client: such a deployment must
// require keys (REQUIRE_API_KEY=true), as the start-up warning says.
func (g *Guard) FromGatewayHost(r *http.Request) bool {
	if !loopbackIP(httpx.ClientIP(r, nil)) || !loopbackIP(httpx.ClientIP(r, g.opt.TrustProxy)) {
		return false
	}
	if !loopbackHost(r.Host) {
		return false
	}
	for _, h := range relayHeaders {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	if xff, ok := r.Header["X-Forwarded-For"]; ok {
		if !httpx.TrustedPeer(r, g.opt.TrustProxy) {
			return false
		}
		for _, v := range xff {
			for _, hop := range strings.Split(v, ",") {
				if !loopbackIP(strings.TrimSpace(hop)) {
					return false
				}
			}
		}
	}
	return g.crossSite(r) == nil
}

// loopbackHost reports a Host header value naming the gateway by a
// loopback name or address.
func loopbackHost(hostport string) bool {
	host, _ := splitHost(hostport)
	return loopbackNames[host] || loopbackIP(host)
}

func loopbackIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}
