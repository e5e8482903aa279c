// Package bench measures ocapnet on loopback, each figure next to its
// baseline measured in the same run, for `ocapnet bench` (docs/BENCHMARKS.md).
package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	bolt "go.etcd.io/bbolt"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// Result is one measurement. Baseline is the baseline's value, when there
// is one, and Ratio = Value / Baseline.
type Result struct {
	Name     string   `json:"name"`
	Value    float64  `json:"value"`
	Unit     string   `json:"unit"`
	Baseline *float64 `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Note     string   `json:"note,omitempty"`
}

func withBaseline(name string, v, base float64, unit, note string) Result {
	r := Result{Name: name, Value: v, Unit: unit, Baseline: &base, Note: note}
	if base != 0 {
		ratio := v / base
		r.Ratio = &ratio
	}
	return r
}

// Options selects what runs.
type Options struct {
	// Quick shrinks every measurement (CI smoke run).
	Quick bool
	// Full uses full ocapnet transports for the 500-peer measurement
	// instead of lightweight TCP-only hosts.
	Full bool
	// Progress, when set, receives a line per measurement as it starts.
	Progress io.Writer
}

// Run runs every benchmark and returns the results in order. Each result
// is also passed to emit as soon as it is measured.
func Run(ctx context.Context, o Options, emit func(Result)) ([]Result, error) {
	var out []Result
	add := func(r Result) {
		out = append(out, r)
		if emit != nil {
			emit(r)
		}
	}
	say := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	tmp, err := os.MkdirTemp("", "ocapnet-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	// Transport throughput and RTT, next to a bare go-libp2p stream.
	window := 2 * time.Second
	rtts := 300
	if o.Quick {
		window, rtts = 300*time.Millisecond, 50
	}
	rl, err := relay.Start(relay.Options{KeySeed: seed(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return nil, err
	}
	defer rl.Stop()
	for _, path := range []string{"tcp", "quic", "relay"} {
		for _, size := range []int{100, 1024, 64 << 10} {
			name := fmt.Sprintf("transport/%s/%s", path, sizeName(size))
			say("%s ...", name)
			ours, err := oursPair(ctx, path, rl)
			if err != nil {
				return out, fmt.Errorf("%s: %w", name, err)
			}
			bare, err := barePair(ctx, path, rl)
			if err != nil {
				ours.close()
				return out, fmt.Errorf("%s baseline: %w", name, err)
			}
			// Interleave ours and the baseline twice, so drift on a
			// noisy machine affects both.
			var ot, bt float64
			for range 2 {
				v, err := ours.throughput(size, window/2)
				if err != nil {
					return out, fmt.Errorf("%s: %w", name, err)
				}
				ot += v / 2
				v, err = bare.throughput(size, window/2)
				if err != nil {
					return out, fmt.Errorf("%s baseline: %w", name, err)
				}
				bt += v / 2
			}
			add(withBaseline(name+"/throughput", ot, bt, "msgs/s", "baseline: bare go-libp2p stream, same frames"))
			op, err := ours.rtt(size, rtts)
			if err != nil {
				return out, fmt.Errorf("%s rtt: %w", name, err)
			}
			bp, err := bare.rtt(size, rtts)
			if err != nil {
				return out, fmt.Errorf("%s baseline rtt: %w", name, err)
			}
			add(withBaseline(name+"/rtt-p50", ms(pct(op, 0.5)), ms(pct(bp, 0.5)), "ms", "lower is better"))
			add(withBaseline(name+"/rtt-p99", ms(pct(op, 0.99)), ms(pct(bp, 0.99)), "ms", "lower is better"))
			ours.close()
			bare.close()
		}
	}
	say("transport/tcp/100B/socket ...")
	sock, err := socketThroughput(100, window)
	if err != nil {
		return out, err
	}
	add(Result{Name: "transport/tcp/100B/plain-socket-throughput", Value: sock, Unit: "msgs/s", Note: "context: a plain TCP socket, same frames"})

	// Durable delivery: group commit next to raw bbolt batches of 64.
	say("durable ...")
	n := 20000
	if o.Quick {
		n = 3000
	}
	for _, senders := range []int{1, 64, 256} {
		if senders == 1 {
			n1 := n / 10
			v, err := durableSends(ctx, filepath.Join(tmp, "d1"), n1, 1)
			if err != nil {
				return out, err
			}
			add(Result{Name: "durable/group-commit/senders-1/throughput", Value: v, Unit: "sends/s", Note: "one fsync per send"})
			continue
		}
		v, err := durableSends(ctx, filepath.Join(tmp, fmt.Sprintf("d%d", senders)), n, senders)
		if err != nil {
			return out, err
		}
		raw, err := rawBolt(filepath.Join(tmp, fmt.Sprintf("raw%d.db", senders)), n)
		if err != nil {
			return out, err
		}
		name := fmt.Sprintf("durable/group-commit/senders-%d/throughput", senders)
		if senders == 256 {
			name = "durable/group-commit/throughput"
		}
		add(withBaseline(name, v, raw, "sends/s", fmt.Sprintf("%d concurrent senders; baseline: raw bbolt, 64 appends per fsync'd transaction", senders)))
	}
	say("durable end to end ...")
	e2e, err := endToEnd(ctx, tmp, n/2)
	if err != nil {
		return out, err
	}
	add(Result{Name: "durable/end-to-end/throughput", Value: e2e, Unit: "msgs/s", Note: "two nodes, loopback TCP, 64 senders, delivered"})

	// Recovery.
	say("recovery ...")
	rd, err := restartToDelivery(ctx, tmp, 1000)
	if err != nil {
		return out, err
	}
	add(Result{Name: "recovery/peer-restart-to-delivery", Value: ms(rd), Unit: "ms", Note: "1,000 messages queued while the peer was down"})
	wk, err := wakeToReconnect(ctx)
	if err != nil {
		return out, err
	}
	add(Result{Name: "recovery/wake-to-reconnect", Value: ms(wk), Unit: "ms", Note: "backoff cap 60 s; a simulated wall-clock jump cuts the wait"})

	// Memory.
	say("memory ...")
	idle, queued, err := memoryPerPeerAndMessage(ctx, filepath.Join(tmp, "mem"), o.Quick)
	if err != nil {
		return out, err
	}
	add(Result{Name: "memory/idle-peer", Value: idle, Unit: "bytes"})
	add(Result{Name: "memory/pending-100B-message", Value: queued, Unit: "bytes"})

	// Scale.
	peers := 500
	if o.Quick {
		peers = 50
	}
	say("scale/%d-peers ...", peers)
	idleFor := 10 * time.Second
	if o.Quick {
		idleFor = 2 * time.Second
	}
	heap, cpu, err := manyPeers(ctx, peers, o.Full, idleFor)
	if err != nil {
		return out, err
	}
	kind := "lightweight TCP-only hosts"
	if o.Full {
		kind = "full ocapnet transports"
	}
	add(Result{Name: fmt.Sprintf("scale/%d-peers/heap", peers), Value: heap / (1 << 20), Unit: "MiB", Note: "heap growth while one node opens channels to " + kind + " (both ends of every connection are in this process)"})
	add(Result{Name: fmt.Sprintf("scale/%d-peers/cpu", peers), Value: cpu * 100, Unit: "% of a core", Note: fmt.Sprintf("whole process, idle channels with 10 s liveness pings, over %v", idleFor)})
	return out, nil
}

func seed() identity.Seed {
	s, err := identity.RandomSeed()
	if err != nil {
		panic(err)
	}
	return s
}

func sizeName(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func listenFor(path string) []string {
	if path == "quic" {
		return []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	return []string{"/ip4/127.0.0.1/tcp/0"}
}

// pair is a sender and an echoing receiver.
type pair interface {
	throughput(size int, d time.Duration) (float64, error)
	rtt(size, n int) ([]time.Duration, error)
	close()
}

var (
	_ pair = (*oursPairT)(nil)
	_ pair = (*barePairT)(nil)
)

// oursPairT is two ocapnet transports: A sends, B counts, or echoes
// messages that start with 'e'.
type oursPairT struct {
	a, b     *transport.Transport
	received atomic.Int64
	echo     chan []byte
}

func oursPair(ctx context.Context, path string, rl *relay.Server) (*oursPairT, error) {
	p := &oursPairT{echo: make(chan []byte, 16)}
	mk := func(h transport.Handler, relays []string) (*transport.Transport, error) {
		return transport.Start(ctx, ident(transport.Config{ListenAddrs: listenFor(path), Relays: relays, WakeInterval: -1, Logger: slog.New(slog.DiscardHandler)}), h)
	}
	var relays []string
	if path == "relay" {
		relays = []string{rl.Addrs()[0]}
	}
	var err error
	p.b, err = mk(transport.Handler{OnMessage: func(from peer.ID, msg []byte) {
		if len(msg) > 0 && msg[0] == 'e' {
			p.b.Send(ctx, from, msg)
			return
		}
		p.received.Add(1)
	}}, relays)
	if err != nil {
		return nil, err
	}
	p.a, err = mk(transport.Handler{OnMessage: func(_ peer.ID, msg []byte) { p.echo <- msg }}, nil)
	if err != nil {
		p.b.Stop(ctx)
		return nil, err
	}
	hint := p.b.ListenAddrs()[0]
	if path == "relay" {
		deadline := time.Now().Add(10 * time.Second)
		for !slices.ContainsFunc(p.b.Relays(), func(r transport.RelayStatus) bool { return r.Reserved }) {
			if time.Now().After(deadline) {
				p.close()
				return nil, errors.New("no reservation on the relay")
			}
			time.Sleep(10 * time.Millisecond) // setup polling
		}
		hint = rl.Addrs()[0] + "/p2p-circuit/p2p/" + p.b.PeerID().String()
	}
	if err := p.a.RegisterHints(p.b.PeerID(), hint); err != nil {
		p.close()
		return nil, err
	}
	if _, err := p.rtt(10, 1); err != nil { // connect
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *oursPairT) throughput(size int, d time.Duration) (float64, error) {
	msg := bytes.Repeat([]byte("x"), size)
	return pump(d, func() error { return p.a.Send(context.Background(), p.b.PeerID(), msg) }, p.received.Load)
}

func (p *oursPairT) rtt(size, n int) ([]time.Duration, error) {
	msg := bytes.Repeat([]byte("e"), size)
	var out []time.Duration
	for range n {
		t0 := time.Now()
		if err := p.a.Send(context.Background(), p.b.PeerID(), msg); err != nil {
			return nil, err
		}
		select {
		case <-p.echo:
		case <-time.After(30 * time.Second):
			return nil, errors.New("no echo within 30 s")
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func (p *oursPairT) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.a.Stop(ctx)
	p.b.Stop(ctx)
}

// barePairT is two plain go-libp2p hosts and one stream carrying the same
// length-prefixed frames: the stack's own limit.
type barePairT struct {
	a, b     host.Host
	s        network.Stream
	r        *wire.Reader
	received atomic.Int64
	echo     chan struct{}
}

const bareProto = "/ocapnet/bench/1.0.0"

func barePair(ctx context.Context, path string, rl *relay.Server) (*barePairT, error) {
	opts := func() []libp2p.Option {
		o := []libp2p.Option{libp2p.Identity(seed().PrivateKey()), libp2p.ListenAddrStrings(listenFor(path)...), libp2p.DisableMetrics()}
		if path == "relay" {
			o = append(o, libp2p.EnableRelay())
		}
		return o
	}
	p := &barePairT{echo: make(chan struct{}, 16)}
	var err error
	if p.b, err = libp2p.New(opts()...); err != nil {
		return nil, err
	}
	if p.a, err = libp2p.New(opts()...); err != nil {
		p.b.Close()
		return nil, err
	}
	p.b.SetStreamHandler(bareProto, func(s network.Stream) {
		r := wire.NewReader(s, 0)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				s.Reset()
				return
			}
			if len(f) > 0 && f[0] == 'e' {
				wire.WriteFrame(s, f)
				continue
			}
			p.received.Add(1)
		}
	})
	target := peer.AddrInfo{ID: p.b.ID(), Addrs: p.b.Addrs()}
	if path == "relay" {
		ri := peer.AddrInfo{ID: rl.ID(), Addrs: rl.Host().Addrs()}
		if err := p.b.Connect(ctx, ri); err != nil {
			p.close()
			return nil, err
		}
		if _, err := client.Reserve(ctx, p.b, ri); err != nil {
			p.close()
			return nil, err
		}
		circuit, _ := peer.AddrInfoFromString(rl.Addrs()[0] + "/p2p-circuit/p2p/" + p.b.ID().String())
		target = *circuit
	}
	if err := p.a.Connect(ctx, target); err != nil {
		p.close()
		return nil, err
	}
	sctx := network.WithAllowLimitedConn(ctx, "bench")
	if p.s, err = p.a.NewStream(sctx, p.b.ID(), bareProto); err != nil {
		p.close()
		return nil, err
	}
	p.r = wire.NewReader(p.s, 0)
	return p, nil
}

func (p *barePairT) throughput(size int, d time.Duration) (float64, error) {
	msg := bytes.Repeat([]byte("x"), size)
	return pump(d, func() error { return wire.WriteFrame(p.s, msg) }, p.received.Load)
}

func (p *barePairT) rtt(size, n int) ([]time.Duration, error) {
	msg := bytes.Repeat([]byte("e"), size)
	var out []time.Duration
	for range n {
		t0 := time.Now()
		if err := wire.WriteFrame(p.s, msg); err != nil {
			return nil, err
		}
		if _, err := p.r.ReadFrame(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func (p *barePairT) close() {
	if p.s != nil {
		p.s.Reset()
	}
	if p.a != nil {
		p.a.Close()
	}
	if p.b != nil {
		p.b.Close()
	}
}

// socketThroughput: a plain TCP socket on loopback with the same frames.
func socketThroughput(size int, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var received atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := wire.NewReader(c, 0)
		for {
			if _, err := r.ReadFrame(); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("x"), size)
	return pump(d, func() error { return wire.WriteFrame(c, msg) }, received.Load)
}

// pump writes frames with write for d, then waits until received (a
// counter on the receiving side) has counted them all; it returns frames
// per second over the whole time.
func pump(d time.Duration, write func() error, received func() int64) (float64, error) {
	start := received()
	t0 := time.Now()
	sent := int64(0)
	for time.Since(t0) < d {
		for range 64 {
			if err := write(); err != nil {
				return 0, err
			}
			sent++
		}
	}
	for received()-start < sent {
		if time.Since(t0) > d+30*time.Second {
			return 0, fmt.Errorf("only %d of %d arrived", received()-start, sent)
		}
		time.Sleep(time.Millisecond) // waiting for the tail of the run
	}
	return float64(sent) / time.Since(t0).Seconds(), nil
}

var benchParams = []byte(`["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\",1,2,3,4,5,6,7,8,9,10]]","slots":[]},"result":"rp+4"}]`)

func quietNode(ctx context.Context, dir string, h node.Handler, window int, relays ...string) (*node.Node, error) {
	return node.Start(ctx, node.Options{Dir: dir, Window: window, Logger: slog.New(slog.DiscardHandler),
		Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: relays, WakeInterval: -1,
			ReconnectBaseDelay: 50 * time.Millisecond, ReconnectMaxDelay: 500 * time.Millisecond}}, h)
}

// durableSends: node Sends per second to an unreachable peer (only the log
// is measured) from the given number of concurrent senders.
func durableSends(ctx context.Context, dir string, n, senders int) (float64, error) {
	nd, err := quietNode(ctx, dir, node.Handler{}, 1<<30)
	if err != nil {
		return 0, err
	}
	defer nd.Stop(ctx)
	away := identity.Seed{0x77}.PeerID()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	t0 := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := nd.Send(ctx, away, "deliver", benchParams); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// rawBolt: bbolt appending 200-byte records, 64 per fsync'd transaction.
func rawBolt(path string, n int) (float64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	value := make([]byte, 200)
	t0 := time.Now()
	for i := 0; i < n; i += 64 {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+64, n); j++ {
				if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(j)), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// endToEnd: delivered messages per second between two nodes, 64 senders.
func endToEnd(ctx context.Context, tmp string, n int) (float64, error) {
	var got atomic.Int64
	done := make(chan struct{})
	recv, err := quietNode(ctx, filepath.Join(tmp, "e2e-b"), node.Handler{OnMessage: func(node.Message) error {
		if got.Add(1) == int64(n) {
			close(done)
		}
		return nil
	}}, 0)
	if err != nil {
		return 0, err
	}
	defer recv.Stop(ctx)
	send, err := quietNode(ctx, filepath.Join(tmp, "e2e-a"), node.Handler{}, 1<<20)
	if err != nil {
		return 0, err
	}
	defer send.Stop(ctx)
	hint := recv.ListenAddrs()[0]
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := send.Send(ctx, recv.PeerID(), "deliver", benchParams, hint); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("delivered %d of %d", got.Load(), n)
	}
	return float64(n) / time.Since(t0).Seconds(), nil
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
	bdir := filepath.Join(tmp, "restart-b")
	b, err := quietNode(ctx, bdir, h, 0)
	if err != nil {
		return 0, err
	}
	baddr := b.ListenAddrs()[0]
	listen := baddr[:len(baddr)-len("/p2p/")-len(b.PeerID().String())]
	bid := b.PeerID()
	b.Stop(ctx)
	a, err := quietNode(ctx, filepath.Join(tmp, "restart-a"), node.Handler{}, 0)
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
	b2, err := node.Start(ctx, node.Options{Dir: bdir, Logger: slog.New(slog.DiscardHandler),
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
		WakeInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	b, err := transport.Start(ctx, bOpts, transport.Handler{})
	if err != nil {
		return 0, err
	}
	baddr := b.ListenAddrs()[0]
	bOpts.ListenAddrs = []string{baddr[:len(baddr)-len("/p2p/")-len(b.PeerID().String())]}
	bid := b.PeerID()
	a, err := transport.Start(ctx, ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Now: now, WakeInterval: 50 * time.Millisecond, WakeThreshold: time.Second,
		ReconnectBaseDelay: 60 * time.Second, ReconnectMaxDelay: 60 * time.Second, Logger: slog.New(slog.DiscardHandler)}),
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
	case <-time.After(10 * time.Second):
		b.Stop(ctx)
		return 0, errors.New("no first connection")
	}
	b.Stop(ctx)
	// A is now waiting for a long backoff; B comes back.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(a.Peers(), func(p transport.PeerInfo) bool {
		return p.ID == bid && p.State == transport.StateReconnecting && !p.NextRetry.IsZero() && time.Until(p.NextRetry) > 2*time.Second
	}) {
		if time.Now().After(deadline) {
			return 0, errors.New("the first transport never waited on a long backoff")
		}
		time.Sleep(5 * time.Millisecond) // setup polling
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

func heapInUse() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}

// memoryPerPeerAndMessage: heap per idle known peer (with a hint) in one
// transport, and per 100-byte message pending for an unreachable peer in a
// node (the transport keeps no queue; the node's window is the queue).
func memoryPerPeerAndMessage(ctx context.Context, dir string, quick bool) (perPeer, perMsg float64, err error) {
	n := 10000
	if quick {
		n = 2000
	}
	t, err := transport.Start(ctx, ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1,
		Logger: slog.New(slog.DiscardHandler)}), transport.Handler{})
	if err != nil {
		return 0, 0, err
	}
	before := heapInUse()
	ids := make([]peer.ID, n)
	for i := range ids {
		ids[i] = seed().PeerID()
		if err := t.RegisterHints(ids[i], fmt.Sprintf("/ip4/127.0.0.1/tcp/1/p2p/%s", ids[i])); err != nil {
			t.Stop(ctx)
			return 0, 0, err
		}
	}
	perPeer = (heapInUse() - before) / float64(n)
	runtime.KeepAlive(ids)
	t.Stop(ctx)

	nd, err := quietNode(ctx, dir, node.Handler{}, n+1)
	if err != nil {
		return 0, 0, err
	}
	defer nd.Stop(ctx)
	away := seed().PeerID()
	msg := []byte(`"` + strings.Repeat("x", 98) + `"`)
	before = heapInUse()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := nd.Send(ctx, away, "m", msg); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, err
	}
	perMsg = (heapInUse() - before) / float64(n)
	return perPeer, perMsg, nil
}

// ident gives c a fresh identity.
func ident(c transport.Config) transport.Options {
	return transport.Options{KeySeed: seed(), IncarnationID: identity.NewIncarnationID(), Config: c}
}

// manyPeers: one transport with channels to n peers; the node's heap and
// the process's CPU use while the channels idle for 10 s.
func manyPeers(ctx context.Context, n int, full bool, idleFor time.Duration) (heap, cpu float64, err error) {
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var addrs []string
	for range n {
		if full {
			t, err := transport.Start(ctx, ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1, Logger: slog.New(slog.DiscardHandler)}), transport.Handler{})
			if err != nil {
				return 0, 0, err
			}
			closers = append(closers, func() { t.Stop(ctx) })
			addrs = append(addrs, t.ListenAddrs()[0])
			continue
		}
		h, err := libp2p.New(libp2p.Identity(seed().PrivateKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport), libp2p.DisableMetrics(), libp2p.DisableRelay())
		if err != nil {
			return 0, 0, err
		}
		h.SetStreamHandler(wire.ProtocolID, responder)
		closers = append(closers, func() { h.Close() })
		addrs = append(addrs, h.Addrs()[0].String()+"/p2p/"+h.ID().String())
	}
	before := heapInUse()
	t, err := transport.Start(ctx, ident(transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1, MaxConnections: n + 10, Logger: slog.New(slog.DiscardHandler)}), transport.Handler{})
	if err != nil {
		return 0, 0, err
	}
	defer t.Stop(ctx)
	for _, a := range addrs {
		info, _ := peer.AddrInfoFromString(a)
		t.SetPinned(info.ID, true)
		t.RegisterHints(info.ID, a)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c := 0
		for _, p := range t.Peers() {
			if p.State == transport.StateConnected {
				c++
			}
		}
		if c == n {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("only %d of %d channels open", c, n)
		}
		time.Sleep(50 * time.Millisecond) // setup polling
	}
	heap = heapInUse() - before
	c0 := cpuTime()
	t0 := time.Now()
	time.Sleep(idleFor) // the idle period being measured
	used := cpuTime() - c0
	if c0 < 0 {
		return heap, -1, nil
	}
	return heap, used.Seconds() / time.Since(t0).Seconds(), nil
}

// responder answers the handshake and then reads frames until the end.
func responder(s network.Stream) {
	r := wire.NewReader(s, 0)
	if _, err := r.ReadFrame(); err != nil {
		s.Reset()
		return
	}
	if err := wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: identity.NewIncarnationID()})); err != nil {
		s.Reset()
		return
	}
	for {
		if _, err := r.ReadFrame(); err != nil {
			s.Reset()
			return
		}
	}
}
