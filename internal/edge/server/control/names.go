package control

import (
	"context"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
)

// Names. Every member of a network has the DNS name
// <device label>.<network label>.<suffix>. A label is the one its owner
// set (Device.DNSName, Network.DNSName) or else derived from the name by
// DNSLabel. Device labels are unique per network and network labels per
// owner: where two would be equal, the one that came later (joined the
// network later, or was created later) gets "-2", "-3", … appended, so the
// names are computed, never stored, and stay unique whatever the order of
// concurrent writes.

// maxLabel is the longest DNS label (RFC 1035), less room for a "-NNN"
// suffix.
const maxLabel = 63

// DNSLabel derives a DNS label from a display name: lower-case ASCII
// letters and digits, every other run of characters one '-', no leading
// or trailing '-', at most 56 bytes; fallback when nothing is left.
func DNSLabel(name, fallback string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			if b.Len() >= maxLabel-7 {
				break
			}
			continue
		}
		dash = true
	}
	if b.Len() == 0 {
		return fallback
	}
	return b.String()
}

// validLabel checks a label a user sets: what DNSLabel could produce.
func validLabel(kind, l string) error {
	if l == "" || len(l) > maxLabel-7 || DNSLabel(l, "") != l {
		return errorf(KindInvalid, "%s dns_name %q must be 1 to %d characters of a-z, 0-9 and inner single '-'", kind, l, maxLabel-7)
	}
	return nil
}

// uniqueLabels gives each entry its label: the explicit one or the
// derived one, made unique by order (explicit labels claim theirs first).
func uniqueLabels(n int, explicit func(i int) string, derived func(i int) string) []string {
	out := make([]string, n)
	taken := make(map[string]bool, n)
	for i := range n {
		if e := explicit(i); e != "" && !taken[e] {
			out[i] = e
			taken[e] = true
		}
	}
	for i := range n {
		if out[i] != "" {
			continue
		}
		base := explicit(i)
		if base == "" {
			base = derived(i)
		}
		l := base
		for k := 2; taken[l]; k++ {
			l = base + "-" + strconv.Itoa(k)
		}
		out[i] = l
		taken[l] = true
	}
	return out
}

// networkLabels maps each of an owner's networks (in creation order, as
// ListNetworks returns them) to its label.
func networkLabels(nets []Network) map[string]string {
	ls := uniqueLabels(len(nets), func(i int) string { return nets[i].DNSName },
		func(i int) string { return DNSLabel(nets[i].Name, "net") })
	out := make(map[string]string, len(nets))
	for i, n := range nets {
		out[n.ID] = ls[i]
	}
	return out
}

// memberLabels gives each member of one network its label, in the order
// the members joined (then of their addresses).
func memberLabels(ms []Membership, devs []Device) []string {
	idx := make([]int, len(ms))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ma, mb := ms[idx[a]], ms[idx[b]]
		if !ma.JoinedAt.Equal(mb.JoinedAt) {
			return ma.JoinedAt.Before(mb.JoinedAt)
		}
		return ma.Host < mb.Host
	})
	ls := uniqueLabels(len(idx), func(i int) string { return devs[idx[i]].DNSName },
		func(i int) string { return DNSLabel(devs[idx[i]].Name, "device") })
	out := make([]string, len(ms))
	for i, j := range idx {
		out[j] = ls[i]
	}
	return out
}

// DNSSuffix is the domain every network's zone is under.
func (s *Service) DNSSuffix() string { return s.opts.DNSSuffix }

// Zones maps each network of an owner to its DNS zone.
func (s *Service) Zones(ctx context.Context, ownerID string) (map[string]string, error) {
	nets, err := s.store.ListNetworks(ctx, ownerID)
	if err != nil {
		return nil, err
	}
	zs := networkLabels(nets)
	for id, l := range zs {
		zs[id] = l + "." + s.opts.DNSSuffix
	}
	return zs, nil
}

// zone is a network's DNS zone: <network label>.<suffix>.
func (s *Service) zone(ctx context.Context, n Network) (string, error) {
	nets, err := s.store.ListNetworks(ctx, n.OwnerID)
	if err != nil {
		return "", err
	}
	return networkLabels(nets)[n.ID] + "." + s.opts.DNSSuffix, nil
}

// DNSRecord is one member's name and addresses.
type DNSRecord struct {
	DeviceID  string
	Name      string // fully qualified, no trailing dot
	IP4, IP6  netip.Addr
	PublicKey string   // the device's key (base64; "" when it registered none)
	Tags      []string // the device's tags (see ParseTags)
	// KeyExpired says PublicKey expired in the network (see
	// Member.KeyExpired): no peer may accept it.
	KeyExpired bool
}

// DNSZone is a network's names.
type DNSZone struct {
	NetworkID string
	Zone      string
	Records   []DNSRecord // ordered by name
}

// Names answers a network's zone: every member's name and addresses.
func (s *Service) Names(ctx context.Context, p Principal, networkID string) (DNSZone, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return DNSZone{}, err
	}
	return s.names(ctx, n)
}

// names is Names of a network already read (and its access checked).
func (s *Service) names(ctx context.Context, n Network) (DNSZone, error) {
	zone, err := s.zone(ctx, n)
	if err != nil {
		return DNSZone{}, err
	}
	ms, devs, err := s.store.MemberDevices(ctx, n.ID)
	if err != nil {
		return DNSZone{}, err
	}
	ls := memberLabels(ms, devs)
	out := DNSZone{NetworkID: n.ID, Zone: zone, Records: make([]DNSRecord, len(ms))}
	now := s.now()
	for i, m := range ms {
		exp := KeyExpiresAt(devs[i].KeySetAt, devs[i].KeyExpiredAt, n.KeyExpiry)
		out.Records[i] = DNSRecord{DeviceID: m.DeviceID, Name: ls[i] + "." + zone,
			IP4: ipam.Addr4(n.Range, m.Host), IP6: ipam.Addr6(n.Range6, m.Host), PublicKey: devs[i].PublicKey, Tags: devs[i].Tags,
			KeyExpired: keyExpired(exp, now)}
	}
	sort.Slice(out.Records, func(a, b int) bool { return out.Records[a].Name < out.Records[b].Name })
	return out, nil
}

// SetDeviceDNSName sets the label of one of p's devices ("" derives it
// from the device's name again). A label another member of one of its
// networks holds is a conflict.
func (s *Service) SetDeviceDNSName(ctx context.Context, p Principal, id, label string) (Device, error) {
	d, err := s.device(ctx, p, id)
	if err != nil {
		return Device{}, err
	}
	label = strings.ToLower(strings.TrimSpace(label))
	if label != "" {
		if err := validLabel("device", label); err != nil {
			return Device{}, err
		}
	}
	ms, err := s.store.DeviceMemberships(ctx, id)
	if err != nil {
		return Device{}, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.NetworkID
		if label == "" {
			continue
		}
		z, err := s.Names(ctx, p, m.NetworkID)
		if err != nil {
			return Device{}, err
		}
		for _, r := range z.Records {
			if r.DeviceID != id && strings.HasPrefix(r.Name, label+".") {
				return Device{}, errorf(KindConflict, "dns_name %q is taken in network %s by device %s", label, m.NetworkID, r.DeviceID)
			}
		}
	}
	d.DNSName = label
	if err := s.store.RenameDevice(ctx, id, d.Name, d.DNSName); err != nil {
		return Device{}, err
	}
	s.networkChanged(ids...)
	return d, nil
}

// watchers wakes the waits on a network's names (Watch) when the network
// changes on this replica or, through NetworkEvents, on another.
type watchers struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// Watch returns a channel closed at the next change of the network (its
// members, their names or addresses). Take it before reading, so that a
// change between the read and the wait is not missed.
func (s *Service) Watch(networkID string) <-chan struct{} {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if s.watch.ch == nil {
		s.watch.ch = map[string]chan struct{}{}
	}
	c, ok := s.watch.ch[networkID]
	if !ok {
		c = make(chan struct{})
		s.watch.ch[networkID] = c
	}
	return c
}

// NetworkNotice wakes the watches of a network: the subscriber of the
// replicas' network notices (netevents) calls it.
func (s *Service) NetworkNotice(networkID string) {
	s.watch.mu.Lock()
	c, ok := s.watch.ch[networkID]
	delete(s.watch.ch, networkID)
	s.watch.mu.Unlock()
	if ok {
		close(c)
	}
}

// NetworkNoticeAll wakes every watch (notices may have been missed).
func (s *Service) NetworkNoticeAll() {
	s.watch.mu.Lock()
	chs := s.watch.ch
	s.watch.ch = nil
	s.watch.mu.Unlock()
	for _, c := range chs {
		close(c)
	}
}

// MapPeer is one member as the other members' daemons need it.
type MapPeer struct {
	DNSRecord
	Routes []netip.Prefix // the subnet routes it carries (RouteState.Primary)
}

// NetMap is what a member's daemon follows of its network: every member's
// name, addresses, key and routes.
type NetMap struct {
	NetworkID string
	Zone      string
	Peers     []MapPeer // ordered by name
	Policy    StoredPolicy
}

// NetworkMap answers a network's map (GET …/map).
func (s *Service) NetworkMap(ctx context.Context, p Principal, networkID string) (NetMap, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return NetMap{}, err
	}
	z, err := s.names(ctx, n)
	if err != nil {
		return NetMap{}, err
	}
	routes, err := s.networkRoutes(ctx, n)
	if err != nil {
		return NetMap{}, err
	}
	pol, err := s.store.Policy(ctx, networkID)
	if err != nil {
		return NetMap{}, err
	}
	out := NetMap{NetworkID: z.NetworkID, Zone: z.Zone, Peers: make([]MapPeer, len(z.Records)), Policy: pol}
	for i, r := range z.Records {
		out.Peers[i] = MapPeer{DNSRecord: r, Routes: routes[r.DeviceID].Primary}
	}
	return out, nil
}
