package p2phost

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	yamuxmux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
)

// DefaultYamuxRTTInterval is how often go-yamux measures a connection's
// round-trip time by default here (Options.YamuxRTTInterval).
const DefaultYamuxRTTInterval = 10 * time.Minute

// ReadClock records when a connection last received bytes from its peer.
// The hosts New builds give every yamux connection one; get it with
// network.Conn.As:
//
//	var rc *p2phost.ReadClock
//	if conn.As(&rc) { quiet := rc.Since() }
type ReadClock struct {
	last atomic.Int64 // monotonic nanoseconds since clockBase
}

// clockBase anchors ReadClock readings on the monotonic clock.
var clockBase = time.Now()

// Since is how long ago the connection last received bytes (at most the
// connection's age: a new connection counts as heard when it was set up).
func (c *ReadClock) Since() time.Duration {
	return time.Since(clockBase) - time.Duration(c.last.Load())
}

func (c *ReadClock) stamp() { c.last.Store(int64(time.Since(clockBase))) }

// clockedConn is the secured connection under yamux, stamping its clock on
// every read that returns bytes.
type clockedConn struct {
	net.Conn
	clock *ReadClock
}

func (c *clockedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.clock.stamp()
	}
	return n, err
}

// yamuxMuxer is go-libp2p's yamux multiplexer with our settings and a read
// clock on each connection.
type yamuxMuxer struct{ inner *yamuxmux.Transport }

// newYamuxMuxer copies go-libp2p's yamux settings (16 MiB stream windows,
// no incoming-stream cap: the resource manager bounds streams) and sets
// how often go-yamux measures the round-trip time. Its keepalive (a ping
// after 30 s without any received frame) stays on: it never fires while
// the transport's liveness probes run, and it still closes a silent
// connection when they are off.
func newYamuxMuxer(rttInterval time.Duration) *yamuxMuxer {
	cfg := *yamuxmux.DefaultTransport.Config()
	cfg.MeasureRTTInterval = rttInterval
	return &yamuxMuxer{inner: (*yamuxmux.Transport)(&cfg)}
}

var _ network.Multiplexer = (*yamuxMuxer)(nil)

func (m *yamuxMuxer) NewConn(nc net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	clock := new(ReadClock)
	clock.stamp()
	mc, err := m.inner.NewConn(&clockedConn{Conn: nc, clock: clock}, isServer, scope)
	if err != nil {
		return nil, err
	}
	return &clockedMuxedConn{MuxedConn: mc, clock: clock}, nil
}

// clockedMuxedConn adds the read clock to what As can reach (the yamux
// session stays reachable too).
type clockedMuxedConn struct {
	network.MuxedConn
	clock *ReadClock
}

func (c *clockedMuxedConn) As(target any) bool {
	if t, ok := target.(**ReadClock); ok {
		*t = c.clock
		return true
	}
	return c.MuxedConn.As(target)
}
