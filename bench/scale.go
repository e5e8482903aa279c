package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/wire"
)

// lightPeers are plain go-libp2p hosts (TCP only, no relay, no resource
// manager) in this process that answer the handshake and read frames: the
// far ends of the channels of a node measured in a child process.
type lightPeers struct {
	hosts []host.Host
	addrs []string
}

func startLightPeers(n int) (*lightPeers, error) {
	lp := &lightPeers{hosts: make([]host.Host, n), addrs: make([]string, n)}
	var i atomic.Int64
	if err := fanOut(4, n, func(int) error {
		k := int(i.Add(1)) - 1
		h, err := libp2p.New(libp2p.Identity(seed().PrivateKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport), libp2p.DefaultSecurity, libp2p.DefaultMuxers,
			libp2p.DisableMetrics(), libp2p.DisableRelay(), libp2p.ResourceManager(&network.NullResourceManager{}))
		if err != nil {
			return err
		}
		h.SetStreamHandler(wire.ProtocolID, responder)
		lp.hosts[k] = h
		lp.addrs[k] = h.Addrs()[0].String() + "/p2p/" + h.ID().String()
		return nil
	}); err != nil {
		lp.close()
		return nil, err
	}
	return lp, nil
}

func (lp *lightPeers) close() {
	for _, h := range lp.hosts {
		if h != nil {
			h.Close()
		}
	}
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

// connectedIdle runs a node in a child process with channels to n
// lightweight peers (in this process), idle for rounds liveness rounds.
func connectedIdle(ctx context.Context, e *env, n int, liveness time.Duration, rounds int, tag string) (childReport, error) {
	lp, err := startLightPeers(n)
	if err != nil {
		return childReport{}, err
	}
	defer lp.close()
	prof := ""
	if e.o.ChildCPUProfile != "" {
		prof = e.o.ChildCPUProfile + "." + tag
	}
	return runChild(ctx, e, "scale-node", childRequest{Dir: filepath.Join(e.tmp, tag), Peers: lp.addrs, Liveness: liveness, Rounds: rounds, CPUProfile: prof},
		10*time.Minute+time.Duration(rounds)*liveness)
}

// liveness is the liveness interval of the idle cases.
func (e *env) liveness() time.Duration {
	if e.o.Liveness > 0 {
		return e.o.Liveness
	}
	return e.quickDur(500*time.Millisecond, 5*time.Second)
}

// scaleCase: a node with n connected idle channels (a tenth with --quick).
func scaleCase(ctx context.Context, e *env, n int) error {
	if e.o.Quick {
		n /= 10
	}
	liveness, rounds := e.liveness(), 3
	rep, err := connectedIdle(ctx, e, n, liveness, rounds, fmt.Sprintf("scale-%d", n))
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("scale/%d", n)
	note := fmt.Sprintf("one run: a node.Node alone in a child process with channels to %d lightweight go-libp2p hosts (in the bench process) that answer the handshake and liveness pings; measured after %d liveness rounds of %v", n, rounds, liveness)
	one := func(name, unit, better string, v float64, extra string) {
		e.add(figure(prefix+"/"+name, unit, better, []float64{v}, note+extra))
	}
	one("connected", "channels", "higher", float64(rep.Connected), fmt.Sprintf("; all connected after %.1f s", rep.ConnectSeconds))
	one("heap-per-peer", "bytes", "lower", (rep.Heap-rep.Heap0)/float64(max(1, rep.Connected)), fmt.Sprintf("; live heap growth over the started node's (%.1f MiB → %.1f MiB) per connected peer", rep.Heap0/(1<<20), rep.Heap/(1<<20)))
	if rep.RSS >= 0 {
		one("rss-per-peer", "bytes", "lower", (rep.RSS-rep.RSS0)/float64(max(1, rep.Connected)), fmt.Sprintf("; RSS growth (%.1f MiB → %.1f MiB) per connected peer", rep.RSS0/(1<<20), rep.RSS/(1<<20)))
	}
	if rep.CPU >= 0 {
		one("idle-cpu", "% of a core", "lower", rep.CPU*100, fmt.Sprintf("; the child's CPU over the %d rounds (liveness every %v; the default is 10 s; --liveness sets it)", rounds, liveness))
		one("idle-cpu-per-1000", "% of a core", "lower", rep.CPU*100*1000/float64(max(1, rep.Connected)), fmt.Sprintf("; idle CPU per 1,000 channels at a liveness interval of %v", liveness))
	}
	return nil
}

// memoryCase: per known peer record (no channel), per 100-byte message
// pending for an unreachable peer, and per connected idle peer.
func memoryCase(ctx context.Context, e *env) error {
	n := e.quick(1000, 10000)
	var known, pending []float64
	for i := range e.runs {
		k, p, err := memoryPerPeerAndMessage(ctx, filepath.Join(e.tmp, fmt.Sprintf("mem-%d", i)), n)
		if err != nil {
			return err
		}
		known, pending = append(known, k), append(pending, p)
	}
	e.add(figure("memory/known-peer-record", "bytes", "lower", known, fmt.Sprintf("heap per known peer with a hint and no channel, %d peers in one transport (in the bench process)", n)))
	e.add(figure("memory/pending-100B-message", "bytes", "lower", pending, fmt.Sprintf("heap per 100-byte message pending for an unreachable peer, %d in one node's window", n)))
	cn := e.quick(20, 200)
	liveness := e.liveness()
	var heap, rs []float64
	runs := e.quick(1, 3)
	for i := range runs {
		rep, err := connectedIdle(ctx, e, cn, liveness, 3, fmt.Sprintf("memidle-%d", i))
		if err != nil {
			return err
		}
		c := float64(max(1, rep.Connected))
		if rep.Connected < cn {
			return fmt.Errorf("only %d of %d channels connected", rep.Connected, cn)
		}
		heap, rs = append(heap, (rep.Heap-rep.Heap0)/c), append(rs, (rep.RSS-rep.RSS0)/c)
	}
	note := fmt.Sprintf("%d connected idle channels from a node.Node alone in a child process to lightweight go-libp2p hosts, after 3 liveness rounds of %v; growth over the started node, per peer; %d runs", cn, liveness, runs)
	e.add(figure("memory/connected-idle-peer/heap", "bytes", "lower", heap, note))
	if rs[0] >= 0 {
		e.add(figure("memory/connected-idle-peer/rss", "bytes", "lower", rs, note))
	}
	return nil
}

// memoryPerPeerAndMessage: heap per idle known peer (with a hint) in one
// transport, and per 100-byte message pending for an unreachable peer in a
// node (the transport keeps no queue; the node's window is the queue).
func memoryPerPeerAndMessage(ctx context.Context, dir string, n int) (perPeer, perMsg float64, err error) {
	nd, err := quietNode(ctx, dir, node.Handler{}, 1<<20)
	if err != nil {
		return 0, 0, err
	}
	defer nd.Stop(ctx)
	t := nd.Transport()
	ids := make([]string, n)
	before := heapInUse()
	for i := range ids {
		id := seed().PeerID()
		ids[i] = id.String()
		if err := t.RegisterHints(id, fmt.Sprintf("/ip4/127.0.0.1/tcp/1/p2p/%s", id)); err != nil {
			return 0, 0, err
		}
	}
	perPeer = (heapInUse() - before) / float64(n)
	away := seed().PeerID()
	msg := []byte(`"` + strings.Repeat("x", 98) + `"`)
	before = heapInUse()
	if err := fanOut(64, n, func(int) error {
		_, err := nd.Send(ctx, away, "m", msg)
		return err
	}); err != nil {
		return 0, 0, err
	}
	perMsg = (heapInUse() - before) / float64(n)
	return perPeer, perMsg, nil
}
