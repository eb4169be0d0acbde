package proxies_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// httpProxy is a forward (absolute-URI) and CONNECT proxy counting the
// requests it carried; with user set it requires Basic proxy auth.
type httpProxy struct {
	addr       string
	user, pass string
	carried    atomic.Int64
	refused    atomic.Int64
	locals     sync.Map // local addresses of the connections it made upstream
}

func startHTTPProxy(t *testing.T, user, pass string) *httpProxy {
	t.Helper()
	p, h, tr := newHTTPProxy(user, pass)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return p
}

// startHTTPSProxy is startHTTPProxy spoken over TLS (an "https" proxy);
// roots trust its certificate.
func startHTTPSProxy(t *testing.T, user, pass string) (p *httpProxy, roots *x509.CertPool) {
	t.Helper()
	p, h, tr := newHTTPProxy(user, pass)
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	p.addr = srv.Listener.Addr().String()
	roots = x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return p, roots
}

func newHTTPProxy(user, pass string) (*httpProxy, http.Handler, *http.Transport) {
	p := &httpProxy{user: user, pass: pass}
	tr := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			p.locals.Store(c.LocalAddr().String(), true)
		}
		return c, err
	}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.user != "" && r.Header.Get("Proxy-Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(p.user+":"+p.pass)) {
			p.refused.Add(1)
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		p.carried.Add(1)
		if r.Method == http.MethodConnect {
			up, err := net.Dial("tcp", r.Host)
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			p.locals.Store(up.LocalAddr().String(), true)
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				up.Close()
				return
			}
			_, _ = rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
			_ = rw.Flush()
			pipe(c, up)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Authorization")
		resp, err := tr.RoundTrip(out)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	return p, h, tr
}

func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(a, b); a.Close() }()
	go func() { defer wg.Done(); _, _ = io.Copy(b, a); b.Close() }()
	wg.Wait()
}

// socksProxy is a SOCKS5 server (CONNECT only) counting the connections
// it carried; with user set it requires username/password auth.
type socksProxy struct {
	addr       string
	user, pass string
	carried    atomic.Int64
	refused    atomic.Int64
	locals     sync.Map
}

func startSOCKS(t *testing.T, user, pass string) *socksProxy {
	t.Helper()
	p := &socksProxy{user: user, pass: pass}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *socksProxy) serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 512)
	if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 {
		return
	}
	methods := buf[2 : 2+int(buf[1])]
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	want := byte(0)
	if p.user != "" {
		want = 2
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		p.refused.Add(1)
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	_, _ = c.Write([]byte{5, want})
	if want == 2 {
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return
		}
		u := make([]byte, buf[1])
		if _, err := io.ReadFull(c, u); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return
		}
		pw := make([]byte, buf[0])
		if _, err := io.ReadFull(c, pw); err != nil {
			return
		}
		if string(u) != p.user || string(pw) != p.pass {
			p.refused.Add(1)
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 {
		return
	}
	var host string
	switch buf[3] {
	case 1:
		if _, err := io.ReadFull(c, buf[:4]); err != nil {
			return
		}
		host = net.IP(buf[:4]).String()
	case 3:
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return
		}
		n := int(buf[0])
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		host = string(buf[:n])
	case 4:
		if _, err := io.ReadFull(c, buf[:16]); err != nil {
			return
		}
		host = net.IP(buf[:16]).String()
	default:
		return
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return
	}
	port := binary.BigEndian.Uint16(buf[:2])
	up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	p.carried.Add(1)
	p.locals.Store(up.LocalAddr().String(), true)
	_, _ = c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	pipe(c, up)
}

// carriedFrom reports whether a connection from addr was one a proxy made.
func carriedFrom(locals *sync.Map, addr string) bool {
	_, ok := locals.Load(addr)
	return ok
}

// upstream is an OpenAI-compatible provider answering every chat with
// "hi from NAME", recording where each request came from.
type upstream struct {
	URL   string
	name  string
	mu    sync.Mutex
	peers []string
}

func startUpstream(t *testing.T, name string) *upstream {
	u := &upstream{name: name}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.peers = append(u.peers, r.RemoteAddr)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, u.name)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// count is how many requests came.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.peers)
}

// last is where the last request came from.
func (u *upstream) last(t *testing.T) string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.peers) == 0 {
		t.Fatalf("upstream %s got no request", u.name)
	}
	return u.peers[len(u.peers)-1]
}
