package relay

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats are a relay's counts since Start. A refused request is counted
// just after the relay answered it (go-libp2p calls the tracer then).
type Stats struct {
	// Reservations held and circuits open now.
	Reservations, Circuits int64
	// RelayedBytes is the data carried by circuits, both directions.
	RelayedBytes int64
	// Refusals counts refused or failed requests by request ("reserve" or
	// "connect") and relay status, e.g. Refusals[Refusal{"reserve",
	// "RESERVATION_REFUSED"}] for a peer over MaxReservationsPerIP.
	Refusals map[Refusal]int64
}

// Refusal is one kind of refused request.
type Refusal struct {
	Request string // "reserve" or "connect"
	Status  string // the relay's answer: RESERVATION_REFUSED, PERMISSION_DENIED, NO_RESERVATION, RESOURCE_LIMIT_EXCEEDED, MALFORMED_MESSAGE, CONNECTION_FAILED, …
}

// stats is the relay service's metrics tracer: it keeps this relay's
// counts and forwards every event to go-libp2p's own tracer (the
// libp2p_relaysvc_* collectors) when metrics are registered.
type stats struct {
	lib    relayv2.MetricsTracer // nil without metrics
	h      host.Host
	health func() error // set once the Server exists

	up                     atomic.Bool
	reservations, circuits atomic.Int64
	bytes                  atomic.Int64
	mu                     sync.Mutex
	refusals               map[Refusal]int64
}

var _ relayv2.MetricsTracer = (*stats)(nil)

func newStats(reg prometheus.Registerer, h host.Host) (*stats, error) {
	s := &stats{h: h, refusals: map[Refusal]int64{}}
	if reg != nil {
		if err := reg.Register(s); err != nil {
			return nil, fmt.Errorf("relay: metrics: %w", err)
		}
		s.lib = relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg))
	}
	return s, nil
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Reservations: s.reservations.Load(), Circuits: s.circuits.Load(), RelayedBytes: s.bytes.Load(),
		Refusals: maps.Clone(s.refusals)}
}

func (s *stats) refused(request string, st pbv2.Status) {
	if st == pbv2.Status_OK {
		return
	}
	s.mu.Lock()
	s.refusals[Refusal{request, st.String()}]++
	s.mu.Unlock()
}

func (s *stats) RelayStatus(enabled bool) {
	s.up.Store(enabled)
	if s.lib != nil {
		s.lib.RelayStatus(enabled)
	}
}

func (s *stats) ConnectionOpened() {
	s.circuits.Add(1)
	if s.lib != nil {
		s.lib.ConnectionOpened()
	}
}

func (s *stats) ConnectionClosed(d time.Duration) {
	s.circuits.Add(-1)
	if s.lib != nil {
		s.lib.ConnectionClosed(d)
	}
}

func (s *stats) ConnectionRequestHandled(st pbv2.Status) {
	s.refused("connect", st)
	if s.lib != nil {
		s.lib.ConnectionRequestHandled(st)
	}
}

func (s *stats) ReservationAllowed(isRenewal bool) {
	if !isRenewal {
		s.reservations.Add(1)
	}
	if s.lib != nil {
		s.lib.ReservationAllowed(isRenewal)
	}
}

func (s *stats) ReservationClosed(n int) {
	s.reservations.Add(int64(-n))
	if s.lib != nil {
		s.lib.ReservationClosed(n)
	}
}

func (s *stats) ReservationRequestHandled(st pbv2.Status) {
	s.refused("reserve", st)
	if s.lib != nil {
		s.lib.ReservationRequestHandled(st)
	}
}

func (s *stats) BytesTransferred(n int) {
	s.bytes.Add(int64(n))
	if s.lib != nil {
		s.lib.BytesTransferred(n)
	}
}

// The relay's own collectors, read from this relay's counts at scrape time.
var (
	descReservations = prometheus.NewDesc("ocapnet_relay_reservations", "Reservations held now.", nil, nil)
	descCircuits     = prometheus.NewDesc("ocapnet_relay_circuits", "Circuits open now.", nil, nil)
	descBytes        = prometheus.NewDesc("ocapnet_relay_relayed_bytes_total", "Bytes carried by circuits, both directions.", nil, nil)
	descRefusals     = prometheus.NewDesc("ocapnet_relay_refusals_total", "Refused or failed requests, by request (reserve, connect) and relay status.", []string{"request", "status"}, nil)
	descPeers        = prometheus.NewDesc("ocapnet_relay_connected_peers", "Peers connected to the relay.", nil, nil)
	descServing      = prometheus.NewDesc("ocapnet_relay_serving", "1 when the relay is serving (every listener bound, relay service running), else 0.", nil, nil)
)

func (s *stats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReservations, descCircuits, descBytes, descRefusals, descPeers, descServing} {
		ch <- d
	}
}

func (s *stats) Collect(ch chan<- prometheus.Metric) {
	st := s.snapshot()
	ch <- prometheus.MustNewConstMetric(descReservations, prometheus.GaugeValue, float64(st.Reservations))
	ch <- prometheus.MustNewConstMetric(descCircuits, prometheus.GaugeValue, float64(st.Circuits))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(st.RelayedBytes))
	for k, n := range st.Refusals {
		ch <- prometheus.MustNewConstMetric(descRefusals, prometheus.CounterValue, float64(n), k.Request, k.Status)
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(s.h.Network().Peers())))
	serving := 0.0
	if s.health != nil && s.health() == nil {
		serving = 1
	}
	ch <- prometheus.MustNewConstMetric(descServing, prometheus.GaugeValue, serving)
}
