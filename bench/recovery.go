package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// recoveryCase: time from a peer's restart to the delivery of what was
// queued for it, and from a (simulated) wake to the reconnection.
func recoveryCase(ctx context.Context, e *env) error {
	n := e.quick(100, 1000)
	var rd, wk []float64
	for i := range e.runs {
		d, err := restartToDelivery(ctx, filepath.Join(e.tmp, fmt.Sprintf("restart-%d", i)), n)
		if err != nil {
			e.add(failed("recovery/peer-restart-to-delivery", err))
			break
		}
		rd = append(rd, ms(d))
	}
	if len(rd) > 0 {
		e.add(figure("recovery/peer-restart-to-delivery", "ms", "lower", rd, fmt.Sprintf("%d messages queued while the peer was down; from its restart to the delivery of all", n)))
	}
	for range e.runs {
		d, err := wakeToReconnect(ctx)
		if err != nil {
			e.add(failed("recovery/wake-to-reconnect", err))
			break
		}
		wk = append(wk, ms(d))
	}
	if len(wk) > 0 {
		e.add(figure("recovery/wake-to-reconnect", "ms", "lower", wk, "backoff cap 60 s; a simulated wall-clock jump cuts the wait"))
	}
	return nil
}

// restartToDelivery: a peer stops, n messages are sent to it, it restarts
// from its directory on the same port; time from its start to the delivery
// of all n.
func restartToDelivery(ctx context.Context, tmp string, n int) (time.Duration, error) {
	var got atomic.Int64
	all := make(chan struct{}, 1)
	h := node.Handler{OnMessage: func(node.Message) error {
		if got.Add(1) == int64(n) {
			all <- struct{}{}
		}
		return nil
	}}
	bdir := filepath.Join(tmp, "b")
	b, err := quietNode(ctx, bdir, h, 0)
	if err != nil {
		return 0, err
	}
	baddr := b.ListenAddrs()[0]
	listen := baddr[:len(baddr)-len("/p2p/")-len(b.PeerID().String())]
	bid := b.PeerID()
	b.Stop(ctx)
	a, err := quietNode(ctx, filepath.Join(tmp, "a"), node.Handler{}, 0)
	if err != nil {
		return 0, err
	}
	defer a.Stop(ctx)
	for i := 0; i < n; i++ {
		if _, err := a.Send(ctx, bid, "deliver", benchParams, baddr); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	b2, err := node.Start(ctx, node.Options{Dir: bdir, Logger: quietLog(),
		Transport: transport.Config{ListenAddrs: []string{listen}, WakeInterval: -1}}, h)
	if err != nil {
		return 0, err
	}
	defer b2.Stop(ctx)
	select {
	case <-all:
		return time.Since(t0), nil
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("delivered %d of %d after the restart", got.Load(), n)
	}
}

// wakeToReconnect: A waits at a 60 s backoff cap to redial B, which is back;
// a simulated wall-clock jump (the injectable clock) makes A redial at once.
func wakeToReconnect(ctx context.Context) (time.Duration, error) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	connected := make(chan struct{}, 1)
	bOpts := ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		WakeInterval: -1, Logger: quietLog()})
	b, err := transport.Start(ctx, bOpts, transport.Handler{})
	if err != nil {
		return 0, err
	}
	baddr := b.ListenAddrs()[0]
	bOpts.ListenAddrs = []string{baddr[:len(baddr)-len("/p2p/")-len(b.PeerID().String())]}
	bid := b.PeerID()
	a, err := transport.Start(ctx, ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Now: now, WakeInterval: 50 * time.Millisecond, WakeThreshold: time.Second,
		ReconnectBaseDelay: 60 * time.Second, ReconnectMaxDelay: 60 * time.Second, Logger: quietLog()}),
		transport.Handler{OnEvent: func(e transport.Event) {
			if s, ok := e.(transport.StateChanged); ok && s.Peer.ID == bid && s.Peer.State == transport.StateConnected {
				select {
				case connected <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		b.Stop(ctx)
		return 0, err
	}
	defer a.Stop(ctx)
	a.SetPinned(bid, true)
	if err := a.RegisterHints(bid, baddr); err != nil {
		b.Stop(ctx)
		return 0, err
	}
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		b.Stop(ctx)
		return 0, fmt.Errorf("%w: no first connection within 30 s", ErrTimeout)
	}
	b.Stop(ctx)
	// A is now waiting for a long backoff; B comes back.
	if !waitUntil(30*time.Second, 5*time.Millisecond, func() bool {
		return slices.ContainsFunc(a.Peers(), func(p transport.PeerInfo) bool {
			return p.ID == bid && p.State == transport.StateReconnecting && !p.NextRetry.IsZero() && time.Until(p.NextRetry) > 2*time.Second
		})
	}) {
		return 0, errors.New("the first transport never waited on a long backoff")
	}
	b2, err := transport.Start(ctx, bOpts, transport.Handler{})
	if err != nil {
		return 0, err
	}
	defer b2.Stop(ctx)
	t0 := time.Now()
	offset.Add(int64(time.Hour)) // the machine "slept" an hour
	select {
	case <-connected:
		return time.Since(t0), nil
	case <-time.After(30 * time.Second):
		return 0, errors.New("no reconnection within 30 s of the wake")
	}
}
