package nucleus

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the Prometheus series of a Server; a nil value records
// nothing.
type serverMetrics struct {
	frames       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	relayPackets *prometheus.CounterVec
	relayBytes   *prometheus.CounterVec
	peers, nets  prometheus.GaugeFunc
	relayFrames  prometheus.Counter // frames{type="relay"}
}

var typeNames = map[byte]string{
	TypeRegister: "register", TypeRegisterAck: "register_ack", TypeKeepalive: "keepalive",
	TypePeers: "peers", TypePeerUpdate: "peer_update", TypePunchRequest: "punch_request",
	TypePunch: "punch", TypeRelay: "relay", TypeLeave: "leave", TypeError: "error",
	TypeCookie: "cookie", TypeRekey: "rekey",
}

func newServerMetrics(reg prometheus.Registerer, s *Server) (*serverMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &serverMetrics{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_nucleus_frames_total", Help: "Authenticated nucleus frames accepted, by type (cookie: COOKIE answers sent).",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_nucleus_dropped_total", Help: "Datagrams the nucleus dropped, by reason.",
		}, []string{"reason"}),
		relayPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_nucleus_relayed_packets_total", Help: "Packets relayed between peers, by network.",
		}, []string{"network"}),
		relayBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_nucleus_relayed_bytes_total", Help: "Payload bytes relayed between peers, by network.",
		}, []string{"network"}),
		peers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "omni_nucleus_peers", Help: "Peers registered with the nucleus.",
		}, func() float64 { return float64(s.Stats().Peers) }),
		nets: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "omni_nucleus_networks", Help: "Networks the nucleus holds state for.",
		}, func() float64 { return float64(s.Stats().Networks) }),
	}
	m.relayFrames = m.frames.WithLabelValues(typeNames[TypeRelay])
	for _, c := range []prometheus.Collector{m.frames, m.dropped, m.relayPackets, m.relayBytes, m.peers, m.nets} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *serverMetrics) frame(typ byte) {
	if m == nil {
		return
	}
	name, ok := typeNames[typ]
	if !ok {
		name = strconv.Itoa(int(typ))
	}
	m.frames.WithLabelValues(name).Inc()
}

func (m *serverMetrics) drop(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

// relayCounters returns a network's relayed packets and bytes counters.
func (m *serverMetrics) relayCounters(network string) (packets, bytes prometheus.Counter) {
	return m.relayPackets.WithLabelValues(network), m.relayBytes.WithLabelValues(network)
}
