package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
	"github.com/ocapnet/ocapnet/wire"
)

// pair is a sender and a receiver that counts frames, or echoes those that
// start with 'e'.
type pair interface {
	// throughput writes size-byte frames for d, in runs of runFrames(size)
	// frames handed over at once, and returns the frames per second the
	// receiver counted (the run ends when it has counted them all).
	throughput(size int, d time.Duration) (float64, error)
	// rtt sends n lone frames one at a time, each written at once and
	// echoed by the receiver.
	rtt(size, n int) ([]time.Duration, error)
	close()
}

var (
	_ pair = (*oursPair)(nil)
	_ pair = (*streamPair)(nil)
)

// writeBuffer is the buffered writer of the baselines and the bytes of
// frames handed over at once: what is "ready" in the throughput runs.
const writeBuffer = 64 << 10

// runFrames is how many frames of size bytes make one run.
func runFrames(size int) int { return max(1, writeBuffer/(size+3)) }

// transportCase: throughput and lone-message RTT of two ocapnet transports
// next to the same go-libp2p stack with a buffered writer (and, over TCP,
// plain TCP with a buffered writer), at 100 B, 1 KiB and 64 KiB.
func transportCase(ctx context.Context, e *env, path string) error {
	window := e.quickDur(100*time.Millisecond, time.Second)
	rtts := e.quick(100, 1000)
	for _, size := range []int{100, 1024, 64 << 10} {
		name := fmt.Sprintf("transport/%s/%s", path, sizeName(size))
		e.say("%s", name)
		if err := transportSize(ctx, e, path, size, window, rtts, name); err != nil {
			e.add(failed(name, err))
		}
	}
	return nil
}

func transportSize(ctx context.Context, e *env, path string, size int, window time.Duration, rtts int, name string) error {
	ours, err := newOursPair(ctx, path, e.rl)
	if err != nil {
		return err
	}
	defer ours.close()
	lp, err := newLibp2pPair(ctx, path, e.rl)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer lp.close()
	bases := []pair{lp}
	if path == "tcp" {
		tp, err := newTCPPair()
		if err != nil {
			return fmt.Errorf("plain TCP baseline: %w", err)
		}
		defer tp.close()
		bases = append(bases, tp)
	}
	tput := func(p pair) func() (float64, error) {
		return func() (float64, error) { return p.throughput(size, window) }
	}
	var bt []func() (float64, error)
	for _, b := range bases {
		bt = append(bt, tput(b))
	}
	o, b, err := alternate(e.runs, tput(ours), bt...)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("msgs/s counted by the receiver; runs of %d frames handed over at once (ours: TrySendFramesOn); baseline: plain go-libp2p hosts, same stack, same frames through a 64 KiB bufio.Writer flushed after each run", runFrames(size))
	goal := ""
	switch {
	case path == "tcp" && size == 100:
		goal = "≥ 0.5× the buffered go-libp2p stack"
	case path == "tcp" && size == 64<<10:
		goal = "≥ 0.8× the buffered go-libp2p stack"
	}
	e.add(compared(name+"/throughput", "msgs/s", "higher", o, b[0], note).withGoal(goal))
	if len(b) > 1 {
		e.add(compared(name+"/throughput-vs-plain-tcp", "msgs/s", "higher", o, b[1], "baseline: plain TCP socket, same frames through a 64 KiB bufio.Writer flushed after each run"))
	}
	lat := func(p pair) func() ([]time.Duration, error) {
		return func() ([]time.Duration, error) { return p.rtt(size, rtts) }
	}
	var bl []func() ([]time.Duration, error)
	for _, b := range bases {
		bl = append(bl, lat(b))
	}
	ol, blat, err := alternate(e.runs, lat(ours), bl...)
	if err != nil {
		return fmt.Errorf("rtt: %w", err)
	}
	rows := latencyRows(name+"/rtt", ol, blat[0], "idle latency: one frame written at once, echoed; baseline: go-libp2p stack, bufio flushed per frame")
	for i := range rows {
		rows[i].Goal = "not above the baseline (a lone message is written at once)"
	}
	for _, r := range rows {
		e.add(r)
	}
	if len(blat) > 1 {
		for _, r := range latencyRows(name+"/rtt-vs-plain-tcp", ol, blat[1], "baseline: plain TCP socket, bufio flushed per frame") {
			e.add(r)
		}
	}
	return nil
}

func listenFor(path string) []string {
	if path == "quic" {
		return []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	return []string{"/ip4/127.0.0.1/tcp/0"}
}

// oursPair is two ocapnet transports: A sends, B counts, or echoes frames
// that start with 'e'.
type oursPair struct {
	a, b     *transport.Transport
	received atomic.Int64
	echo     chan []byte
}

func newOursPair(ctx context.Context, path string, rl *relay.Server) (*oursPair, error) {
	p := &oursPair{echo: make(chan []byte, 16)}
	mk := func(h transport.Handler, relays []string) (*transport.Transport, error) {
		return transport.Start(ctx, ident(transport.Config{ListenAddrs: listenFor(path), Relays: relays, WakeInterval: -1, Logger: quietLog()}), h)
	}
	var relays []string
	if path == "relay" {
		relays = []string{rl.Addrs()[0]}
	}
	var err error
	p.b, err = mk(transport.Handler{OnMessage: func(from peer.ID, msg []byte) {
		if len(msg) > 0 && msg[0] == 'e' {
			_ = p.b.Send(ctx, from, msg) // a failed echo shows as a timeout in rtt
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
		if !waitUntil(20*time.Second, 10*time.Millisecond, func() bool {
			return slices.ContainsFunc(p.b.Relays(), func(r transport.RelayStatus) bool { return r.Reserved })
		}) {
			p.close()
			return nil, errors.New("no reservation on the relay within 20 s")
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

func (p *oursPair) throughput(size int, d time.Duration) (float64, error) {
	run := make([][]byte, runFrames(size))
	msg := bytes.Repeat([]byte("x"), size)
	for i := range run {
		run[i] = msg
	}
	id := p.b.PeerID()
	return pump(d, len(run), func() error {
		_, err := p.a.TrySendFramesOn(context.Background(), id, run, 0)
		return err
	}, p.received.Load)
}

func (p *oursPair) rtt(size, n int) ([]time.Duration, error) {
	msg := bytes.Repeat([]byte("e"), size)
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := p.a.Send(context.Background(), p.b.PeerID(), msg); err != nil {
			return nil, err
		}
		select {
		case <-p.echo:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("%w: no echo within 30 s", ErrTimeout)
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func (p *oursPair) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.a.Stop(ctx)
	p.b.Stop(ctx)
}

// streamPair is one stream carrying varint length-prefixed frames written
// through a bufio.Writer: a go-libp2p stream between two plain hosts, or a
// plain TCP connection. The receiver counts frames, or echoes those that
// start with 'e' (flushing each echo).
type streamPair struct {
	w        *bufio.Writer
	r        *wire.Reader
	received atomic.Int64
	closers  []func()
	wg       sync.WaitGroup
}

// serve is the receiving end.
func (p *streamPair) serve(rw io.ReadWriter) {
	defer p.wg.Done()
	r := wire.NewReader(rw, 0)
	w := bufio.NewWriterSize(rw, writeBuffer)
	var frame []byte
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		if len(f) > 0 && f[0] == 'e' {
			frame = wire.AppendFrame(frame[:0], f)
			if _, err := w.Write(frame); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			continue
		}
		p.received.Add(1)
	}
}

func (p *streamPair) throughput(size int, d time.Duration) (float64, error) {
	frame := wire.AppendFrame(nil, bytes.Repeat([]byte("x"), size))
	k := runFrames(size)
	return pump(d, k, func() error {
		for range k {
			if _, err := p.w.Write(frame); err != nil {
				return err
			}
		}
		return p.w.Flush() // nothing more is ready
	}, p.received.Load)
}

func (p *streamPair) rtt(size, n int) ([]time.Duration, error) {
	frame := wire.AppendFrame(nil, bytes.Repeat([]byte("e"), size))
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := p.w.Write(frame); err != nil {
			return nil, err
		}
		if err := p.w.Flush(); err != nil {
			return nil, err
		}
		if _, err := p.r.ReadFrame(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func (p *streamPair) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.wg.Wait()
}

const bareProto = "/ocapnet/bench/1.0.0"

// newLibp2pPair: two plain go-libp2p hosts with the transport's stack (TCP
// or QUIC, go-libp2p's default security and muxers, over the relay for
// "relay") and one stream.
func newLibp2pPair(ctx context.Context, path string, rl *relay.Server) (*streamPair, error) {
	opts := func() []libp2p.Option {
		o := []libp2p.Option{libp2p.Identity(seed().PrivateKey()), libp2p.ListenAddrStrings(listenFor(path)...), libp2p.DisableMetrics(),
			libp2p.NoTransports, libp2p.DefaultSecurity, libp2p.DefaultMuxers}
		if path == "quic" {
			o = append(o, libp2p.Transport(quic.NewTransport))
		} else {
			o = append(o, libp2p.Transport(tcp.NewTCPTransport))
		}
		if path == "relay" {
			o = append(o, libp2p.EnableRelay())
		}
		return o
	}
	p := &streamPair{}
	a, err := libp2p.New(opts()...)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { a.Close() })
	b, err := libp2p.New(opts()...)
	if err != nil {
		p.close()
		return nil, err
	}
	p.closers = append(p.closers, func() { b.Close() })
	b.SetStreamHandler(bareProto, func(s network.Stream) {
		p.wg.Add(1)
		p.serve(s)
		s.Reset()
	})
	target := peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}
	if path == "relay" {
		if target, err = reserveBare(ctx, b, rl); err != nil {
			p.close()
			return nil, err
		}
	}
	if err := a.Connect(ctx, target); err != nil {
		p.close()
		return nil, err
	}
	s, err := a.NewStream(network.WithAllowLimitedConn(ctx, "bench"), b.ID(), bareProto)
	if err != nil {
		p.close()
		return nil, err
	}
	p.closers = append(p.closers, func() { s.Reset() })
	p.w, p.r = bufio.NewWriterSize(s, writeBuffer), wire.NewReader(s, 0)
	return p, nil
}

// reserveBare reserves a slot for h on the relay and returns h's circuit
// address.
func reserveBare(ctx context.Context, h host.Host, rl *relay.Server) (peer.AddrInfo, error) {
	ri := peer.AddrInfo{ID: rl.ID(), Addrs: rl.Host().Addrs()}
	if err := h.Connect(ctx, ri); err != nil {
		return peer.AddrInfo{}, err
	}
	if _, err := client.Reserve(ctx, h, ri); err != nil {
		return peer.AddrInfo{}, err
	}
	circuit, err := peer.AddrInfoFromString(rl.Addrs()[0] + "/p2p-circuit/p2p/" + h.ID().String())
	if err != nil {
		return peer.AddrInfo{}, err
	}
	return *circuit, nil
}

// newTCPPair: a plain TCP connection on loopback.
func newTCPPair() (*streamPair, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &streamPair{}
	p.closers = append(p.closers, func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		p.close()
		return nil, err
	}
	p.closers = append(p.closers, func() { c.Close() })
	sc, ok := <-accepted
	if !ok {
		p.close()
		return nil, errors.New("plain TCP: accept failed")
	}
	p.closers = append(p.closers, func() { sc.Close() })
	p.wg.Add(1)
	go p.serve(sc)
	p.w, p.r = bufio.NewWriterSize(c, writeBuffer), wire.NewReader(c, 0)
	return p, nil
}

// pump calls writeRun (which hands over perRun frames) for d, then waits
// until received (the receiver's counter) has counted every frame; it
// returns frames per second over the whole time.
func pump(d time.Duration, perRun int, writeRun func() error, received func() int64) (float64, error) {
	start := received()
	t0 := time.Now()
	sent := int64(0)
	for time.Since(t0) < d {
		if err := writeRun(); err != nil {
			return 0, err
		}
		sent += int64(perRun)
	}
	if !waitUntil(d+30*time.Second, 100*time.Microsecond, func() bool { return received()-start >= sent }) {
		return 0, fmt.Errorf("%w: only %d of %d frames arrived", ErrTimeout, received()-start, sent)
	}
	return float64(sent) / time.Since(t0).Seconds(), nil
}
