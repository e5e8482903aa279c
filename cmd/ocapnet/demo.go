package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
)

func init() {
	register("demo", command{
		summary: "show ocapnet on loopback: a relay, two peers, a peer that stops and comes back, nothing lost",
		run:     runDemo,
	})
}

// demoPeer is one side of the demo with what it received.
type demoPeer struct {
	n   *node.Node
	dir string
	mu  sync.Mutex
	got map[int]int // message number → times delivered
}

func (d *demoPeer) start(ctx context.Context, relayAddr string, timeouts transport.Config) error {
	opts := node.Options{Dir: d.dir, Transport: timeouts}
	opts.Transport.Relays = []string{relayAddr}
	n, err := node.Start(ctx, opts, node.Handler{OnMessage: func(m node.Message) error {
		var k []int
		if json.Unmarshal(m.Params, &k) == nil && len(k) == 1 {
			d.mu.Lock()
			d.got[k[0]]++
			d.mu.Unlock()
		}
		return nil
	}})
	d.n = n
	return err
}

func (d *demoPeer) counts() (distinct, dups int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.got {
		distinct++
		dups += c - 1
	}
	return
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", stderr, "[--before N] [--during N] | --kernel")
	before := fs.Int("before", 20, "messages sent while both peers are up")
	during := fs.Int("during", 30, "messages sent while peer B is stopped")
	timeout := fs.Duration("timeout", 15*time.Second, "give up waiting for delivery after this long")
	kernel := fs.Bool("kernel", false, "instead: two kernel endpoints through the relay, an OCAP URL redeemed and called across a restart of the exporter")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *kernel {
		code, err := kernelDemo(stdout, *timeout)
		if err != nil {
			fmt.Fprintf(stderr, "ocapnet demo: %v\n", err)
		}
		return code
	}
	if *before < 1 || *during < 1 {
		fmt.Fprintln(stderr, "ocapnet demo: --before and --during must be at least 1")
		return 2
	}
	code, err := demo(stdout, *before, *during, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "ocapnet demo: %v\n", err)
	}
	return code
}

func demo(out io.Writer, before, during int, timeout time.Duration) (int, error) {
	ctx := context.Background()
	began := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	relayAddr, tmp, cleanup, err := demoRelayAndDir("ocapnet-demo-")
	if err != nil {
		return 1, err
	}
	defer cleanup()
	say("relay    %s", relayAddr)

	timeouts := transport.Config{
		ListenAddrs:        []string{"/ip4/127.0.0.1/tcp/0"},
		ReconnectBaseDelay: 100 * time.Millisecond,
		ReconnectMaxDelay:  time.Second,
		WakeInterval:       -1,
	}
	a := &demoPeer{dir: tmp + "/a", got: map[int]int{}}
	b := &demoPeer{dir: tmp + "/b", got: map[int]int{}}
	if err := b.start(ctx, relayAddr, timeouts); err != nil {
		return 1, err
	}
	if err := a.start(ctx, relayAddr, timeouts); err != nil {
		b.n.Stop(ctx)
		return 1, err
	}
	defer func() { a.n.Stop(ctx) }()
	bid := b.n.PeerID()
	viaRelay := relayAddr + "/p2p-circuit/p2p/" + bid.String()
	say("peer A   %s", a.n.PeerID())
	say("peer B   %s  (A reaches it through the relay)", bid)

	sent := 0
	send := func(k int) error {
		_, err := a.n.Send(ctx, bid, "demo", fmt.Appendf(nil, "[%d]", k), viaRelay)
		if err == nil {
			sent++
		}
		return err
	}
	wait := func(want int, what string) (time.Duration, bool) {
		start := time.Now()
		last := -1
		for {
			got, _ := b.counts()
			if got >= want {
				return time.Since(start), true
			}
			if got != last {
				say("  ... %s: %d/%d delivered", what, got, want)
				last = got
			}
			if time.Since(start) > timeout {
				return time.Since(start), false
			}
			time.Sleep(50 * time.Millisecond) // progress polling
		}
	}

	say("1. A sends %d messages to B", before)
	for k := 1; k <= before; k++ {
		if err := send(k); err != nil {
			return 1, err
		}
	}
	route := func() string {
		for _, p := range a.n.Peers() {
			if p.ID == bid && p.RemoteAddr != "" {
				return p.RemoteAddr
			}
		}
		return "(not connected)"
	}
	if d, ok := wait(before, "both up"); ok {
		say("   all %d delivered in %v over %s", before, d.Round(time.Millisecond), route())
	} else {
		say("   not delivered within %v", timeout)
	}

	say("2. B stops; A keeps sending %d messages (each stored on disk before Send returns)", during)
	if err := b.n.Stop(ctx); err != nil {
		return 1, err
	}
	for k := before + 1; k <= before+during; k++ {
		if err := send(k); err != nil {
			return 1, err
		}
		time.Sleep(10 * time.Millisecond) // pacing so the outage lasts a moment
	}
	say("3. B restarts from its data directory")
	if err := b.start(ctx, relayAddr, timeouts); err != nil {
		return 1, err
	}
	defer func() { b.n.Stop(ctx) }()
	recovered, _ := wait(before+during, "after restart")
	say("   reconnected over %s", route())

	distinct, dups := b.counts()
	lost := sent - distinct
	say("")
	say("sent: %d  delivered: %d  lost: %d  duplicates: %d  recovered in: %.1fs", sent, distinct, lost, dups, recovered.Seconds())
	say("(demo took %.1fs)", time.Since(began).Seconds())
	if lost != 0 || dups != 0 {
		return 1, fmt.Errorf("%d lost, %d duplicates", lost, dups)
	}
	return 0, nil
}

// demoRelayAndDir starts the demos' loopback relay and makes their
// temporary directory; cleanup stops the relay and removes the directory.
func demoRelayAndDir(prefix string) (relayAddr, dir string, cleanup func(), err error) {
	rseed, err := identity.RandomSeed()
	if err != nil {
		return "", "", nil, err
	}
	rl, err := relay.Start(relay.Options{KeySeed: rseed, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return "", "", nil, err
	}
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		rl.Stop()
		return "", "", nil, err
	}
	return rl.Addrs()[0], dir, func() { os.RemoveAll(dir); rl.Stop() }, nil
}
