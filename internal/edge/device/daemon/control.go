package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Status is the answer of the control socket's status request and the
// JSON `omni edge status --json` prints.
type Status struct {
	State         string     `json:"state"` // starting, running, stopping
	Server        string     `json:"server"`
	DeviceID      string     `json:"device_id,omitempty"`
	DeviceName    string     `json:"device_name"`
	HardwareUUID  string     `json:"hardware_uuid"`
	PublicKey     string     `json:"public_key"`
	ExitNode      bool       `json:"exit_node"` // consent to serve as exit node
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// KeyExpiresAt is when the device key expires first among its
	// networks (absent: never); the daemon replaces it before.
	KeyExpiresAt *time.Time      `json:"key_expires_at,omitempty"`
	LastError    string          `json:"last_error,omitempty"`
	Networks     []NetworkStatus `json:"networks"`
}

// NetworkStatus is one joined network.
type NetworkStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Interface   string `json:"interface"`
	VirtualIP   string `json:"virtual_ip"`    // with prefix length
	VirtualIPv6 string `json:"virtual_ip_v6"` // with prefix length
	Nucleus     string `json:"nucleus"`
	// SecretVersion is the version of the network secret in use.
	SecretVersion int64        `json:"secret_version,omitempty"`
	Registered    bool         `json:"registered"`          // nucleus session up
	Exit          string       `json:"exit_via,omitempty"`  // virtual IP of the exit node in use
	DNSZone       string       `json:"dns_zone,omitempty"`  // the zone of the members' names served here
	DNSNames      int          `json:"dns_names,omitempty"` // names in it
	Peers         []PeerReport `json:"peers"`
}

// PeerReport is one peer of a network.
type PeerReport struct {
	PublicKey string `json:"public_key"`
	// Name is the member's short DNS name ("robot"), DNSName the full
	// one ("robot.home.omni.internal"); empty while names are unknown.
	Name          string     `json:"name,omitempty"`
	DNSName       string     `json:"dns_name,omitempty"`
	VirtualIP     string     `json:"virtual_ip"`
	VirtualIPv6   string     `json:"virtual_ip_v6,omitempty"`
	Endpoint      string     `json:"endpoint,omitempty"`
	Path          Path       `json:"path"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	// HandshakeAge is seconds since the last handshake; absent: never.
	HandshakeAge *float64 `json:"handshake_age_seconds,omitempty"`
	RxBytes      uint64   `json:"rx_bytes"`
	TxBytes      uint64   `json:"tx_bytes"`
}

func addrString(s fmt.Stringer, valid bool) string {
	if !valid {
		return ""
	}
	return s.String()
}

func (d *daemon) status() Status {
	id := d.st.Identity()
	d.mu.Lock()
	s := Status{State: d.phase, Server: d.cfg.Server, DeviceID: d.device.ID, DeviceName: d.cfg.Name,
		HardwareUUID: id.HardwareUUID, PublicKey: id.PublicKey.String(), ExitNode: d.cfg.ExitNode,
		LastError: d.lastErr, Networks: []NetworkStatus{}}
	if !d.keyExpires.IsZero() {
		t := d.keyExpires
		s.KeyExpiresAt = &t
	}
	if !d.lastBeat.IsZero() {
		t := d.lastBeat
		s.LastHeartbeat = &t
	}
	nets := d.nets
	d.mu.Unlock()
	now := d.clock.Now()
	for _, n := range nets {
		ts := n.tun.Status()
		n.mu.Lock()
		ns := NetworkStatus{ID: n.cfg.NetworkID, Name: n.cfg.Name, Interface: ts.Interface,
			VirtualIP: addrString(n.cfg.VirtualIP, n.cfg.VirtualIP.IsValid()), VirtualIPv6: addrString(n.cfg.VirtualIPv6, n.cfg.VirtualIPv6.IsValid()),
			Nucleus: n.cfg.Nucleus, SecretVersion: n.version, Registered: n.registered, Exit: addrString(n.exit, n.exit.IsValid()), Peers: []PeerReport{},
			DNSZone: n.zone, DNSNames: n.names}
		byAddr, recZone := n.byAddr, n.recZone
		n.mu.Unlock()
		if ns.Interface == "" {
			ns.Interface = n.cfg.Interface
		}
		for _, p := range ts.Peers {
			pr := PeerReport{PublicKey: p.PublicKey.String(), VirtualIP: addrString(p.VirtualIP, p.VirtualIP.IsValid()),
				VirtualIPv6: addrString(p.VirtualIPv6, p.VirtualIPv6.IsValid()), Endpoint: addrString(p.Endpoint, p.Endpoint.IsValid()),
				Path: p.Path, RxBytes: p.RxBytes, TxBytes: p.TxBytes}
			if pr.Path == "" {
				pr.Path = PathNone
			}
			rec, ok := byAddr[p.VirtualIP]
			if !ok && p.VirtualIPv6.IsValid() {
				rec = byAddr[p.VirtualIPv6]
			}
			if rec.Name != "" {
				pr.Name, pr.DNSName = shortName(rec.Name, recZone), rec.Name
			}
			if !p.LastHandshake.IsZero() {
				t := p.LastHandshake
				age := max(now.Sub(t), 0).Seconds()
				pr.LastHandshake, pr.HandshakeAge = &t, &age
			}
			ns.Peers = append(ns.Peers, pr)
		}
		sort.Slice(ns.Peers, func(i, j int) bool { return ns.Peers[i].VirtualIP < ns.Peers[j].VirtualIP })
		s.Networks = append(s.Networks, ns)
	}
	return s
}

// ErrNotRunning means no daemon answers on the state directory's socket.
var ErrNotRunning = errors.New("no edge daemon is running (start one with `omni edge up`)")

type control struct {
	srv *http.Server
	ln  net.Listener
}

// listenControl serves GET /v1/status, POST /v1/down, POST /v1/ping and
// POST /v1/netcheck on DIR/control.sock (mode 0600, in a 0700
// directory). A socket another daemon still answers on is an error; a
// stale one is replaced.
func listenControl(dir string, d *daemon, stop func()) (*control, error) {
	path := filepath.Join(dir, SocketFile)
	if _, err := os.Lstat(path); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, qerr := Query(ctx, dir)
		cancel()
		if qerr == nil {
			return nil, fmt.Errorf("an edge daemon is already running with state dir %s", dir)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d.status())
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, _ *http.Request) {
		d.log.Info("stop requested on the control socket")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"message":"stopping"}`+"\n")
		_ = http.NewResponseController(w).Flush()
		stop()
	})
	mux.HandleFunc("POST /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		var req PingRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeControl(w, nil, diagErrorf(http.StatusBadRequest, "bad ping request: %v", err))
			return
		}
		rep, err := d.ping(r.Context(), req)
		writeControl(w, rep, err)
	})
	mux.HandleFunc("POST /v1/netcheck", func(w http.ResponseWriter, r *http.Request) {
		rep, err := d.netcheck(r.Context())
		writeControl(w, rep, err)
	})
	c := &control{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// controlError is the body of a control-socket answer other than 200.
type controlError struct {
	Error string `json:"error"`
}

func writeControl(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusInternalServerError
		if de, ok := err.(*diagError); ok {
			status = de.status
		}
		w.WriteHeader(status)
		v = controlError{Error: err.Error()}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Close stops serving and removes the socket.
func (c *control) Close() {
	_ = c.srv.Close()
	_ = c.ln.Close()
}

func controlClient(dir string) *http.Client {
	path := filepath.Join(dir, SocketFile)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
}

func controlCall(ctx context.Context, dir, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://omni-edge"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := controlClient(dir).Do(req)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR) {
			return ErrNotRunning
		}
		return fmt.Errorf("control socket %s: %w", filepath.Join(dir, SocketFile), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ce controlError
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ce) == nil && ce.Error != "" {
			return errors.New(ce.Error)
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("control socket: %s (is the daemon older than this command?)", resp.Status)
		}
		return fmt.Errorf("control socket: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(out)
}

// Query asks the daemon using state directory dir for its status.
func Query(ctx context.Context, dir string) (Status, error) {
	var s Status
	return s, controlCall(ctx, dir, http.MethodGet, "/v1/status", nil, &s)
}

// Ping asks the daemon using state directory dir for one echo to the peer
// req names. An unknown or unreachable target is an error; a missing
// reply is not (PingReply.Replied is false).
func Ping(ctx context.Context, dir string, req PingRequest) (PingReply, error) {
	var r PingReply
	return r, controlCall(ctx, dir, http.MethodPost, "/v1/ping", req, &r)
}

// Netcheck asks the daemon using state directory dir to probe each
// network's nucleus.
func Netcheck(ctx context.Context, dir string) (NetcheckReport, error) {
	var r NetcheckReport
	return r, controlCall(ctx, dir, http.MethodPost, "/v1/netcheck", struct{}{}, &r)
}

// Down asks the daemon to stop and waits, until ctx ends, for its socket
// to stop answering.
func Down(ctx context.Context, dir string) error {
	if err := controlCall(ctx, dir, http.MethodPost, "/v1/down", nil, nil); err != nil {
		return err
	}
	for {
		if _, err := Query(ctx, dir); errors.Is(err, ErrNotRunning) {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the daemon did not stop in time: %w", ctx.Err())
		case <-t.C:
		}
	}
}
