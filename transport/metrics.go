package transport

import "github.com/prometheus/client_golang/prometheus"

// metrics are the transport's Prometheus collectors. They are always kept;
// they are registered only when Options.Metrics is set.
type metrics struct {
	msgsIn, msgsOut   prometheus.Counter
	bytesIn, bytesOut prometheus.Counter
	writes            prometheus.Counter
	probes            prometheus.Counter
	probesFailed      prometheus.Counter
	probesLocal       prometheus.Counter
	probesDeferred    prometheus.Counter
	probesHeard       prometheus.Counter
	evictions         prometheus.Counter
	admissionRefused  prometheus.Counter
	rateRefused       prometheus.Counter
	strayHandshakes   prometheus.Counter
	legacyRefreshes   prometheus.Counter
	closedRedials     prometheus.Counter
	attempts          prometheus.Counter
	giveUps           *prometheus.CounterVec
	oversize          prometheus.Counter
	handshakeFailures prometheus.Counter
	peersFunc         func() map[State]int
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		msgsIn:            prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_messages_received_total", Help: "Application frames received."}),
		msgsOut:           prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_messages_sent_total", Help: "Application frames written."}),
		bytesIn:           prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_bytes_received_total", Help: "Application payload bytes received."}),
		bytesOut:          prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_bytes_sent_total", Help: "Application payload bytes written."}),
		writes:            prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_writes_total", Help: "Stream writes (each carries one or more coalesced frames)."}),
		probes:            prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_liveness_probes_total", Help: "Liveness probes made (a yamux ping over yamux connections, else a libp2p ping)."}),
		probesFailed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_liveness_failures_total", Help: "Liveness probes without an answer (the connection was closed)."}),
		probesLocal:       prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_liveness_local_refusals_total", Help: "Liveness probes refused by a local resource limit (not counted against the peer)."}),
		probesDeferred:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_liveness_deferred_total", Help: "Liveness probes deferred to the next tick because the most probes were in flight."}),
		probesHeard:       prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_liveness_heard_total", Help: "Liveness probes not sent because the connection had received bytes from the peer within the interval."}),
		evictions:         prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_evictions_total", Help: "Channels closed to make room for a newcomer at the connection limit."}),
		admissionRefused:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_admission_refusals_total", Help: "Channels refused at the connection limit (no channel could make room)."}),
		rateRefused:       prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_rate_refusals_total", Help: "Inbound connections and handshakes refused by the per-address rates or the handshake bound."}),
		strayHandshakes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_stray_handshakes_total", Help: "Extra handshake frames on an established stream (a JavaScript peer's concurrent sends, W8), dropped."}),
		legacyRefreshes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_legacy_refreshes_total", Help: "Fresh channels asked for to a JavaScript peer one of whose streams ended (it then forgets its registered channel, W9)."}),
		closedRedials:     prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_closed_redials_refused_total", Help: "Inbound streams of JavaScript peers whose link we closed on purpose (they cannot be told and redial), reset at once."}),
		attempts:          prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_connection_attempts_total", Help: "Connection and reconnection attempts."}),
		giveUps:           prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ocapnet_transport_giveups_total", Help: "Links that ended: closed here, closed by the peer, retries exhausted, fatal errors."}, []string{"reason"}),
		oversize:          prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_oversize_frames_total", Help: "Inbound frames over the size limit (the channel was closed)."}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_transport_handshake_failures_total", Help: "Failed or rejected handshakes."}),
	}
	if reg != nil {
		reg.MustRegister(m.msgsIn, m.msgsOut, m.bytesIn, m.bytesOut, m.writes, m.probes, m.probesFailed, m.probesLocal, m.probesDeferred, m.probesHeard, m.evictions, m.admissionRefused, m.rateRefused, m.strayHandshakes, m.legacyRefreshes, m.closedRedials, m.attempts, m.giveUps, m.oversize, m.handshakeFailures, m)
	}
	return m
}

var peersDesc = prometheus.NewDesc("ocapnet_transport_peers", "Known peers by connection state.", []string{"state"}, nil)

// Describe and Collect make metrics a collector of the per-state peer
// counts, read from the peer table at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- peersDesc }

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.peersFunc == nil {
		return
	}
	counts := m.peersFunc()
	for s := StateIdle; s <= StateGaveUp; s++ {
		ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(counts[s]), s.String())
	}
}
