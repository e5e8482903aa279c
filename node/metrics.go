package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's Prometheus collectors, registered on the
// transport's registry (Options.Transport.Metrics) when it is set.
type metrics struct {
	sends, acked, delivered, redelivered prometheus.Counter
	retransmits, gaps, refused           prometheus.Counter
	giveUps                              prometheus.Counter
	writtenRuns                          prometheus.Histogram
	intentInLoop, intentWaits            prometheus.Counter
	loads, evictions, pages              prometheus.Counter
	window                               func() (unacked, parked, stalled float64)
}

var (
	unackedDesc = prometheus.NewDesc("ocapnet_node_unacknowledged_messages", "Messages stored and not yet acknowledged, all peers.", nil, nil)
	parkedDesc  = prometheus.NewDesc("ocapnet_node_parked_messages", "Messages handed back in give-ups, waiting for Resend or Discard.", nil, nil)
	stalledDesc = prometheus.NewDesc("ocapnet_node_stalled_peers", "Peers whose link is up that acknowledge nothing (see the Stalled event).", nil, nil)
)

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "ocapnet_node_" + name, Help: help})
	}
	m := &metrics{
		sends:        c("sends_total", "Messages made durable by Send."),
		acked:        c("acknowledged_total", "Messages acknowledged by their peer."),
		delivered:    c("delivered_total", "Messages handed to the application."),
		redelivered:  c("redelivered_total", "Messages handed over again after a crash, marked Redelivery."),
		retransmits:  c("retransmit_rounds_total", "Windows resent after an ack timeout, a reconnection or a channel switch."),
		gaps:         c("gaps_accepted_total", "Gaps in a peer's sequence accepted after GapTolerance receptions."),
		refused:      c("handler_refusals_total", "Messages the handler refused (offered again later)."),
		giveUps:      c("giveups_total", "Give-ups (close, restart, application limit)."),
		intentInLoop: c("intent_writes_in_read_loop_total", "Delivery-intent reservations written in a peer's read loop (the first, after a gap, or when the ones made ahead fell behind)."),
		intentWaits:  c("intent_waits_total", "Times a read loop waited for a reservation made ahead."),
		loads:        c("peer_loads_total", "Peer states loaded from the store into memory (first contact, or again after an eviction)."),
		evictions:    c("peer_evictions_total", "Idle peer states dropped from memory (their state stays on disk)."),
		pages:        c("log_pages_read_total", "Pages of unacknowledged messages read from the outbound log by the pumps."),
		writtenRuns: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ocapnet_node_written_run_messages",
			Help: "Envelopes handed to the transport in one coalesced write.", Buckets: prometheus.ExponentialBuckets(1, 4, 6)}),
	}
	if reg != nil {
		reg.MustRegister(m.sends, m.acked, m.delivered, m.redelivered, m.retransmits, m.gaps, m.refused, m.giveUps, m.writtenRuns, m.intentInLoop, m.intentWaits, m.loads, m.evictions, m.pages, m)
	}
	return m
}

// Describe and Collect report the window gauges at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- unackedDesc
	ch <- parkedDesc
	ch <- stalledDesc
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.window == nil {
		return
	}
	u, p, s := m.window()
	ch <- prometheus.MustNewConstMetric(unackedDesc, prometheus.GaugeValue, u)
	ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, p)
	ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, s)
}
