package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
)

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpx.DecodeJSON(w, r, v, 64<<10)
}

func ok(w http.ResponseWriter, status int, v any) error {
	httpx.WriteJSON(w, status, v)
	return nil
}

func tptr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func sptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ---- auth ----

func (s *Server) tokens(w http.ResponseWriter, p control.TokenPair) error {
	return ok(w, http.StatusOK, wire.TokenResponse{
		Token: p.Token, RefreshToken: p.RefreshToken, RefreshTokenCamel: p.RefreshToken,
		TokenType: "Bearer", ExpiresIn: int(p.ExpiresIn.Seconds()),
	})
}

func (s *Server) loginSecurityKey(w http.ResponseWriter, r *http.Request) error {
	var req wire.LoginKeyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	p, err := s.svc.LoginSecurityKeyFrom(r.Context(), req.Key, s.client(r))
	if err != nil {
		return toHTTP(err)
	}
	return s.tokens(w, p)
}

func refreshToken(req wire.RefreshRequest) string {
	if req.RefreshToken != "" {
		return req.RefreshToken
	}
	return req.RefreshTokenCamel
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req wire.RefreshRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	p, err := s.svc.Refresh(r.Context(), refreshToken(req))
	if err != nil {
		return toHTTP(err)
	}
	return s.tokens(w, p)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	var req wire.RefreshRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.svc.Logout(r.Context(), refreshToken(req)); err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, wire.Message{Message: "Logged out"})
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request) error {
	st, err := s.svc.StartSession(r.Context(), s.client(r))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, wire.SessionResponse{UUID: st.ID, AuthURL: s.baseURL(r) + "/login?session=" + st.ID, ExpiresAt: st.Expires, Code: st.Code})
}

// client is what the service records about the caller of a login.
func (s *Server) client(r *http.Request) control.Client {
	return control.Client{IP: httpx.ClientIP(r, s.cfg.TrustProxy), UserAgent: r.UserAgent()}
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	list, err := s.svc.ListLoginSessions(r.Context(), p)
	if err != nil {
		return err
	}
	out := make([]wire.LoginSession, len(list))
	for i, l := range list {
		out[i] = wire.LoginSession{ID: l.ID, Method: l.Method, KeyID: sptr(l.KeyID), ClientIP: l.ClientIP, UserAgent: l.UserAgent,
			CreatedAt: l.CreatedAt, LastUsedAt: tptr(l.LastUsedAt), ExpiresAt: l.ExpiresAt, Current: l.ID == p.Family}
	}
	return listed(w, r, p, out)
}

func (s *Server) revokeSession(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.RevokeLoginSession(r.Context(), p, r.PathValue("id")); err != nil {
		return toHTTP(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	u, err := s.svc.User(r.Context(), p.UserID)
	if err != nil {
		return toHTTP(err)
	}
	devs, err := s.svc.ListDevices(r.Context(), p)
	if err != nil {
		return err
	}
	nets, err := s.svc.ListNetworks(r.Context(), p)
	if err != nil {
		return err
	}
	var m wire.Me
	m.ID, m.Email, m.Plan = u.ID, u.Email, u.Plan
	lim := s.svc.PlanLimit(u.Plan)
	m.Limits.MaxDevices, m.Limits.MaxNetworks = lim.MaxDevices, lim.MaxNetworks
	m.Usage.Devices, m.Usage.Networks = len(devs), len(nets)
	return ok(w, http.StatusOK, m)
}

func keyWire(k control.SecurityKey) wire.SecurityKey {
	return wire.SecurityKey{ID: k.ID, Name: k.Name, CreatedAt: k.CreatedAt, ExpiresAt: tptr(k.ExpiresAt), RevokedAt: tptr(k.RevokedAt), LastUsedAt: tptr(k.LastUsedAt)}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	keys, err := s.svc.ListSecurityKeys(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	out := make([]wire.SecurityKey, len(keys))
	for i, k := range keys {
		out[i] = keyWire(k)
	}
	return listed(w, r, p, out)
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.CreateSecurityKeyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return httpx.BadRequest("expires_in %q must be a positive duration such as 720h", req.ExpiresIn)
		}
		ttl = d
	}
	raw, k, err := s.svc.CreateSecurityKeyAs(r.Context(), p, req.Name, ttl)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusCreated, wire.CreatedSecurityKey{SecurityKey: keyWire(k), Key: raw})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.RevokeSecurityKey(r.Context(), p.UserID, r.PathValue("id")); err != nil {
		return toHTTP(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- devices ----

func deviceWire(d control.DeviceStatus) wire.Device {
	return wire.Device{ID: d.ID, Name: d.Name, HardwareUUID: d.HardwareUUID, Platform: d.Platform, Online: d.Online,
		LastSeen: tptr(d.LastSeen), ExitNodeConsent: d.ExitConsent, CreatedAt: d.CreatedAt, PublicKey: d.PublicKey,
		DNSName: d.DNSName, KeySetAt: tptr(d.KeySetAt), KeyExpiredAt: tptr(d.KeyExpiredAt), Tags: d.Tags}
}

func (s *Server) registerDevice(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.RegisterDeviceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	hw := req.HardwareUUID
	if hw == "" {
		hw = req.HardwareID
	}
	if req.AdvertisedRoutes != nil {
		if _, err := control.ParseRoutes(*req.AdvertisedRoutes); err != nil {
			return toHTTP(err)
		}
	}
	d, created, err := s.svc.RegisterDevice(r.Context(), p, req.Name, hw, req.Platform, req.PublicKey)
	if err != nil {
		return toHTTP(err)
	}
	if req.AdvertisedRoutes != nil {
		if _, err := s.svc.AdvertiseRoutes(r.Context(), p, d.ID, *req.AdvertisedRoutes); err != nil {
			return toHTTP(err)
		}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	st, _, err := s.svc.GetDevice(r.Context(), p, d.ID)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, status, deviceWire(st))
}

// listDevices answers the caller's devices, each with its memberships
// (network name and addresses): what the dashboard's devices page shows,
// in one call.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	devs, err := s.svc.ListDevices(r.Context(), p)
	if err != nil {
		return err
	}
	nets, err := s.svc.DeviceNetworks(r.Context(), p)
	if err != nil {
		return err
	}
	out := make([]wire.Device, len(devs))
	for i, d := range devs {
		out[i] = deviceWire(d)
		ms := nets[d.ID]
		out[i].VirtualNetworks = make([]wire.DeviceNetwork, len(ms))
		for j, m := range ms {
			out[i].VirtualNetworks[j] = wire.DeviceNetwork{NetworkID: m.NetworkID, NetworkName: m.NetworkName,
				VirtualIP: m.IP4.String(), VirtualIPv6: m.IP6.String(), IsExitNode: m.IsExitNode, ExitNode: sptr(m.ExitNodeID)}
		}
	}
	return listed(w, r, p, out)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	d, ms, err := s.svc.GetDevice(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return toHTTP(err)
	}
	out := deviceWire(d)
	out.VirtualNetworks = []wire.DeviceNetwork{}
	for _, m := range ms {
		n, err := s.svc.GetNetwork(r.Context(), p, m.NetworkID)
		if err != nil {
			return toHTTP(err)
		}
		out.VirtualNetworks = append(out.VirtualNetworks, wire.DeviceNetwork{NetworkID: m.NetworkID, NetworkName: n.Name,
			VirtualIP: ipam.Addr4(n.Range, m.Host).String(), VirtualIPv6: ipam.Addr6(n.Range6, m.Host).String(),
			IsExitNode: m.IsExitNode, ExitNode: sptr(m.ExitNodeID)})
	}
	return ok(w, http.StatusOK, out)
}

func (s *Server) renameDevice(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.RenameDeviceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Tags != nil {
		// Checked before anything is written, so that a bad list changes
		// nothing.
		if _, err := control.ParseTags(*req.Tags); err != nil {
			return toHTTP(err)
		}
	}
	if req.Name != "" || (req.DNSName == nil && req.Tags == nil) {
		if _, err := s.svc.RenameDevice(r.Context(), p, r.PathValue("id"), req.Name); err != nil {
			return toHTTP(err)
		}
	}
	if req.DNSName != nil {
		if _, err := s.svc.SetDeviceDNSName(r.Context(), p, r.PathValue("id"), *req.DNSName); err != nil {
			return toHTTP(err)
		}
	}
	if req.Tags != nil {
		if _, err := s.svc.SetDeviceTags(r.Context(), p, r.PathValue("id"), *req.Tags); err != nil {
			return toHTTP(err)
		}
	}
	return s.answerDevice(w, r, p)
}

// answerDevice answers the device of the path, as it is now.
func (s *Server) answerDevice(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	st, _, err := s.svc.GetDevice(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, deviceWire(st))
}

// expireDeviceKey expires a device's current key at once (every network
// it is in) and answers the device.
func (s *Server) expireDeviceKey(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if _, err := s.svc.ExpireDeviceKey(r.Context(), p, r.PathValue("id")); err != nil {
		return toHTTP(err)
	}
	return s.answerDevice(w, r, p)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.DeleteDevice(r.Context(), p, r.PathValue("id")); err != nil {
		return toHTTP(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// heartbeat is the hot path: it encodes its small response by hand.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	body, err := httpx.ReadBody(w, r, 64<<10)
	if err != nil {
		return err
	}
	req, fast := parseHeartbeat(body)
	if !fast {
		if err := httpx.DecodeJSONBytes(body, &req, r.Header.Get("Content-Type")); err != nil {
			return err
		}
	}
	hw := req.HardwareID
	if hw == "" {
		hw = req.HardwareUUID
	}
	res, err := s.svc.Heartbeat(r.Context(), p, hw, req.IsExitNode)
	if err != nil {
		return toHTTP(err)
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"message":"Heartbeat received","last_seen":"`...)
	b = res.LastSeen.AppendFormat(b, time.RFC3339)
	b = append(b, `","exit_nodes":{`...)
	for i, e := range res.ExitNodes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.NetworkID)
		b = append(b, ':', '"')
		b = e.IP.AppendTo(b)
		b = append(b, '"')
	}
	b = append(b, '}')
	if len(res.SecretVersions) > 0 {
		b = append(b, `,"secret_versions":{`...)
		for i, v := range res.SecretVersions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v.NetworkID)
			b = append(b, ':')
			b = strconv.AppendInt(b, v.Version, 10)
		}
		b = append(b, '}')
	}
	if len(res.KeyExpiries) > 0 || !res.KeyExpiredAt.IsZero() {
		b = append(b, `,"key_set_at":"`...)
		b = res.KeySetAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","key_expires_at":{`...)
		for i, e := range res.KeyExpiries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e.NetworkID)
			b = append(b, ':', '"')
			b = e.At.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
		b = append(b, '}')
		if !res.KeyExpiredAt.IsZero() {
			b = append(b, `,"key_expired_at":"`...)
			b = res.KeyExpiredAt.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
	}
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // cannot fail for a string
	return append(b, q...)
}

// ---- networks ----

func (s *Server) serverWire(r *http.Request, n control.Network, srv *control.UserServer) wire.Server {
	if srv != nil {
		return wire.Server{Host: srv.Host, Name: srv.Name, ID: srv.ID, PublicKey: srv.PublicKey}
	}
	return wire.Server{Host: s.nucleusHost(r), Name: s.cfg.NucleusName, PublicKey: s.cfg.NucleusPublicKey}
}

// networkWire answers a network; zones are its owner's networks' DNS
// zones (nil: looked up).
func (s *Server) networkWire(r *http.Request, p control.Principal, n control.Network, zones map[string]string) wire.Network {
	if zones == nil {
		zones, _ = s.svc.Zones(r.Context(), n.OwnerID)
	}
	var srv *control.UserServer
	if n.ServerID != "" {
		if v, err := s.svc.GetUserServer(r.Context(), p, n.ServerID); err == nil {
			srv = &v
		}
	}
	return wire.Network{ID: n.ID, Name: n.Name, IPRange: n.Range.String(), IPv6Range: n.Range6.String(),
		SubnetMask: ipam.Mask(n.Range), SubnetPrefixV6: n.Range6.Bits(), Server: s.serverWire(r, n, srv), CreatedAt: n.CreatedAt,
		DNSName: zones[n.ID], KeyExpiry: control.FormatKeyExpiry(n.KeyExpiry)}
}

func (s *Server) createNetwork(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.CreateNetworkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	n, err := s.svc.CreateNetwork(r.Context(), p, req.Name, req.IPRange, req.ServerID)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusCreated, s.networkWire(r, p, n, nil))
}

func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	nets, err := s.svc.ListNetworks(r.Context(), p)
	if err != nil {
		return err
	}
	zones, err := s.svc.Zones(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	out := make([]wire.Network, len(nets))
	for i, n := range nets {
		out[i] = s.networkWire(r, p, n, zones)
	}
	return listed(w, r, p, out)
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	n, err := s.svc.GetNetwork(r.Context(), p, r.PathValue("vn"))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, s.networkWire(r, p, n, nil))
}

func (s *Server) updateNetwork(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.UpdateNetworkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	patch := control.NetworkPatch{Name: req.Name, DNSName: req.DNSName}
	if req.ServerID.Set {
		v := req.ServerID.Value
		patch.ServerID = &v
	}
	if req.KeyExpiry != nil {
		d, err := control.ParseKeyExpiry(*req.KeyExpiry)
		if err != nil {
			return toHTTP(err)
		}
		patch.KeyExpiry = &d
	}
	n, err := s.svc.UpdateNetwork(r.Context(), p, r.PathValue("vn"), patch)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, s.networkWire(r, p, n, nil))
}

func (s *Server) deleteNetwork(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.DeleteNetwork(r.Context(), p, r.PathValue("vn")); err != nil {
		return toHTTP(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	ms, err := s.svc.Members(r.Context(), p, r.PathValue("vn"))
	if err != nil {
		return toHTTP(err)
	}
	z, err := s.svc.Names(r.Context(), p, r.PathValue("vn"))
	if err != nil {
		return toHTTP(err)
	}
	names := make(map[string]string, len(z.Records))
	for _, rec := range z.Records {
		names[rec.DeviceID] = rec.Name
	}
	routes, err := s.svc.NetworkRoutes(r.Context(), p, r.PathValue("vn"))
	if err != nil {
		return toHTTP(err)
	}
	out := make([]wire.Member, len(ms))
	for i, m := range ms {
		out[i] = wire.Member{DeviceID: m.DeviceID, Name: m.Device.Name, DNSName: names[m.DeviceID], Platform: m.Device.Platform,
			VirtualIP: m.IP4.String(), VirtualIPv6: m.IP6.String(), IsExitNode: m.IsExitNode, ExitNode: sptr(m.ExitNodeID),
			Online: m.Device.Online, LastSeen: tptr(m.Device.LastSeen), JoinedAt: m.JoinedAt, PublicKey: m.Device.PublicKey,
			ExitNodeConsent: m.Device.ExitConsent, KeyExpiresAt: tptr(m.KeyExpiresAt), KeyExpired: m.KeyExpired, Tags: m.Device.Tags}
		if rs, ok := routes[m.DeviceID]; ok {
			w := routesWire(rs)
			out[i].Routes = &w
		}
	}
	return listed(w, r, p, out)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	// The body is optional (clients of the published API send none).
	body, err := httpx.ReadBody(w, r, 64<<10)
	if err != nil {
		return err
	}
	var req wire.JoinRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := httpx.DecodeJSONBytes(body, &req, r.Header.Get("Content-Type")); err != nil {
			return err
		}
	}
	res, err := s.svc.Join(r.Context(), p, r.PathValue("vn"), r.PathValue("dev"), req.PublicKey)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, s.joinWire(r, res))
}

// membership answers a member's current join answer without joining:
// not a member → 404.
func (s *Server) membership(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	res, err := s.svc.Membership(r.Context(), p, r.PathValue("vn"), r.PathValue("dev"))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, s.joinWire(r, res))
}

func (s *Server) joinWire(r *http.Request, res control.JoinResult) wire.JoinResponse {
	n := res.Network
	return wire.JoinResponse{
		Cluster: n.Name, CommunityName: n.Name, SecretKey: res.Secret,
		VirtualIP: res.IP4.String(), VirtualIPv6: res.IP6.String(),
		SubnetMask: ipam.Mask(n.Range), SubnetPrefixV6: n.Range6.Bits(),
		Server:    s.serverWire(r, n, res.Server),
		NetworkID: n.ID, DeviceID: res.Membership.DeviceID, IPRange: n.Range.String(), IPv6Range: n.Range6.String(),
		SecretVersion: n.SecretVersion,
	}
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.Leave(r.Context(), p, r.PathValue("vn"), r.PathValue("dev")); err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, wire.Message{Message: "Left virtual network"})
}

func (s *Server) updateMember(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.UpdateMemberRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	patch := control.MemberPatch{IsExitNode: req.IsExitNode}
	if req.ExitNode.Set {
		v := req.ExitNode.Value
		patch.ExitNode = &v
	}
	m, err := s.svc.UpdateMember(r.Context(), p, r.PathValue("vn"), r.PathValue("dev"), patch)
	if err != nil {
		return toHTTP(err)
	}
	n, err := s.svc.GetNetwork(r.Context(), p, m.NetworkID)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, wire.DeviceNetwork{NetworkID: m.NetworkID, NetworkName: n.Name, VirtualIP: ipam.Addr4(n.Range, m.Host).String(),
		VirtualIPv6: ipam.Addr6(n.Range6, m.Host).String(), IsExitNode: m.IsExitNode, ExitNode: sptr(m.ExitNodeID)})
}

// ---- user servers ----

func serverWire(v control.UserServer) wire.UserServer {
	return wire.UserServer{ID: v.ID, Name: v.Name, Host: v.Host, Country: v.Country, PublicKey: v.PublicKey, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt}
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	list, err := s.svc.ListUserServers(r.Context(), p)
	if err != nil {
		return err
	}
	out := make([]wire.UserServer, len(list))
	for i, v := range list {
		out[i] = serverWire(v)
	}
	return listed(w, r, p, out)
}

func (s *Server) createServer(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.UserServerRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	v, err := s.svc.CreateUserServer(r.Context(), p, control.ServerInput{Name: req.Name, Host: req.Host, Country: req.Country, PublicKey: req.PublicKey})
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusCreated, serverWire(v))
}

// servedNetworks is what a user-hosted nucleus polls: the networks that
// use it, with their secrets and members.
func (s *Server) servedNetworks(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	list, err := s.svc.ServedNetworks(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return toHTTP(err)
	}
	out := make([]wire.ServedNetwork, len(list))
	for i, n := range list {
		out[i] = wire.ServedNetwork{ID: n.ID, Name: n.Name, SecretKey: n.Secret, SecretVersion: n.SecretVersion,
			Members: make([]wire.ServedMember, len(n.Members))}
		for j, m := range n.Members {
			out[i].Members[j] = wire.ServedMember{DeviceID: m.DeviceID, VirtualIP: m.IP4.String(), VirtualIPv6: m.IP6.String(), PublicKey: m.PublicKey}
		}
	}
	return ok(w, http.StatusOK, out)
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	v, err := s.svc.GetUserServer(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, serverWire(v))
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.UserServerRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	v, err := s.svc.UpdateUserServer(r.Context(), p, r.PathValue("id"), control.ServerInput{Name: req.Name, Host: req.Host, Country: req.Country, PublicKey: req.PublicKey})
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, serverWire(v))
}

func (s *Server) deleteServer(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	if err := s.svc.DeleteUserServer(r.Context(), p, r.PathValue("id")); err != nil {
		return toHTTP(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
