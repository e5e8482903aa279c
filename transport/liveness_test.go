package transport

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A connection that carries traffic from the peer is not probed: what it
// receives shows the peer is alive. Once it is quiet, probes resume.
func TestLivenessSkipsProbesWhileHearingThePeer(t *testing.T) {
	const interval = 200 * time.Millisecond
	a := startNode(t, func(o *Options) {
		o.LivenessInterval = interval
		o.LivenessTimeout = 2 * time.Second
	})
	b := startNode(t, nil)
	sendAll(t, b, a.PeerID(), []string{"hello"}, a.addr(t))
	waitMessages(t, a, b.PeerID(), []string{"hello"})
	waitFor(t, 10*time.Second, "a first probe", func() bool { return testutil.ToFloat64(a.metrics.probes) >= 1 })

	// B sends to A every interval/10 for six intervals.
	probes0, heard0 := testutil.ToFloat64(a.metrics.probes), testutil.ToFloat64(a.metrics.probesHeard)
	want := []string{"hello"}
	tick := time.NewTicker(interval / 10)
	for i := range 60 {
		<-tick.C // pacing the traffic, not waiting for a condition
		m := fmt.Sprintf("m%d", i)
		sendAll(t, b, a.PeerID(), []string{m})
		want = append(want, m)
	}
	tick.Stop()
	probes1, heard1 := testutil.ToFloat64(a.metrics.probes), testutil.ToFloat64(a.metrics.probesHeard)
	// At most one probe was already on its way when the traffic started.
	if sent := probes1 - probes0; sent > 1 {
		t.Errorf("%v probes sent over a connection that received a frame every %v", sent, interval/10)
	}
	if heard := heard1 - heard0; heard < 3 {
		t.Errorf("%v probes skipped for received traffic over six intervals, want at least 3", heard)
	}
	waitMessages(t, a, b.PeerID(), want)

	waitFor(t, 10*time.Second, "probes on the quiet connection", func() bool {
		return testutil.ToFloat64(a.metrics.probes) >= probes1+2
	})
	if got := testutil.ToFloat64(a.metrics.probesFailed); got != 0 {
		t.Errorf("%v probes failed against a live peer", got)
	}
}
