// Package daemon is the peer daemon around a node: programs in any language
// drive it through JSON lines on stdin/stdout (--stdio) or an HTTP API with a
// durable server-sent event stream (--api). Both speak the same JSON objects
// (docs/DAEMON.md).
//
// Files: daemon.go (Start, Stop, ready information), options.go, files.go
// (data directory and token file), request.go (strict request parsing),
// ops.go (running requests), stdio.go (batched stdin), output.go (grouped
// stdout writes), events.go (the node's events as JSON), peerwatch.go
// (coalescing and since), ackwait.go, monitor.go (relays, addresses,
// health), eventlog.go (retention), sse.go, api.go, auth.go, status.go.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
)

// Daemon is a running peer daemon.
type Daemon struct {
	opts    Options
	n       *node.Node
	log     *slog.Logger
	out     *outWriter // nil without stdio
	reg     *prometheus.Registry
	api     *apiServer // nil without --api
	elog    *eventLog  // nil without --api
	watch   *peerWatch
	acks    *ackWaiters
	started time.Time

	// ep is the kernel endpoint (Options.Kernel), nil without; kernel
	// holds the ops' handles; kctx ends when Stop begins (kernel ops
	// waiting for a peer).
	ep      *endpoint.Endpoint
	kernel  *kernelState
	kctx    context.Context
	kcancel context.CancelFunc

	// setup is closed when Start is done: the node's callbacks wait for it,
	// so that nothing is delivered before the event log is open.
	setup     chan struct{}
	setupFail bool

	// evMu orders the unprompted events that are not messages: the node's
	// (one goroutine) and the monitor's (coalesced peer events, addrs).
	evMu sync.Mutex

	// mu guards the acknowledgements held while stdio sends are in flight
	// (see onAcked).
	mu       sync.Mutex
	inflight map[peer.ID]int
	held     map[peer.ID][][]byte

	lastAddrs []string // monitor only, after Start

	done     chan struct{} // closed when Stop begins
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopDone chan struct{}
	stopErr  error
}

// Start checks the data directory, starts the node and, if configured, the
// HTTP API; with relays configured it waits (ReadyWait at most) for their
// first reservation attempts.
func Start(ctx context.Context, o Options) (*Daemon, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := CheckDataDir(o.Node.Dir, o.AllowInsecureDir); err != nil {
		return nil, err
	}
	d := &Daemon{opts: o, log: o.Logger, reg: prometheus.NewRegistry(), watch: newPeerWatch(o.PeerEventInterval, o.Logger),
		acks: newAckWaiters(), started: time.Now(), setup: make(chan struct{}), inflight: map[peer.ID]int{},
		held: map[peer.ID][][]byte{}, done: make(chan struct{}), stopDone: make(chan struct{})}
	if o.Out != nil {
		d.out = newOutWriter(o.Out)
	}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.Node.Transport.Metrics = d.reg
	if o.Node.Logger == nil {
		o.Node.Logger = o.Logger
	}
	h := node.Handler{OnMessage: d.onMessage, OnEvent: d.onEvent}
	d.kctx, d.kcancel = context.WithCancel(context.Background())
	if o.Kernel {
		d.kernel = newKernelState()
		if d.ep, err = endpoint.New(endpoint.Options{OnMessage: d.onMessage, OnEvent: d.onEvent, Logger: o.Logger,
			Bind: func(name string) endpoint.Handler { return d.kernel.object(d, name, "") }}); err != nil {
			return nil, err
		}
		h = d.ep.Handler()
	}
	n, err := node.Start(ctx, o.Node, h)
	if err != nil {
		d.setupFail = true
		close(d.setup)
		if d.ep != nil {
			d.ep.Close()
		}
		return nil, err
	}
	d.n = n
	if d.ep != nil {
		if err := d.ep.Attach(n); err != nil {
			d.setupFail = true
			close(d.setup)
			d.ep.Close()
			n.Stop(ctx)
			return nil, err
		}
	}
	fail := func(err error) (*Daemon, error) {
		d.setupFail = true
		close(d.setup)
		if d.elog != nil {
			d.elog.stop()
		}
		if d.ep != nil {
			d.ep.Close()
		}
		n.Stop(ctx)
		return nil, err
	}
	if o.API != "" {
		if d.elog, err = openEventLog(n.Store(), o.EventMaxBytes, o.EventMaxAge, o.Logger, nil); err != nil {
			return fail(err)
		}
		if d.api, err = startAPI(d); err != nil {
			return fail(err)
		}
	}
	d.waitRelays(ctx)
	d.lastAddrs = n.ListenAddrs()
	close(d.setup)
	d.wg.Add(1)
	go d.monitor()
	return d, nil
}

// ready waits until Start is done; false if it failed.
func (d *Daemon) ready() bool {
	<-d.setup
	return !d.setupFail
}

// Node returns the daemon's node.
func (d *Daemon) Node() *node.Node { return d.n }

// APIAddr returns the API's listen address ("" without --api).
func (d *Daemon) APIAddr() string {
	if d.api == nil {
		return ""
	}
	return d.api.addr
}

// APIURL returns the API's URL, http:// or https:// ("" without --api).
func (d *Daemon) APIURL() string {
	if d.api == nil {
		return ""
	}
	return d.api.url
}

// LoginURL returns a one-time link that opens the status page in a browser
// (it sets a session cookie); "" without --api.
func (d *Daemon) LoginURL() (string, error) {
	if d.api == nil {
		return "", errors.New("no API (--api)")
	}
	code, _, err := d.api.auth.newLogin()
	if err != nil {
		return "", err
	}
	return d.api.url + "/login?code=" + code, nil
}

// Ready is the first line the daemon prints.
type Ready struct {
	Event       string   `json:"event"`
	PeerID      string   `json:"peerId"`
	Addrs       []string `json:"addrs"`
	Incarnation string   `json:"incarnationId"`
	API         string   `json:"api,omitempty"`
	DataDir     string   `json:"dataDir"`
	Version     string   `json:"version"`
}

// Ready returns the ready line's contents.
func (d *Daemon) Ready() Ready {
	return Ready{Event: "ready", PeerID: d.n.PeerID().String(), Addrs: d.n.ListenAddrs(), Incarnation: d.n.IncarnationID(),
		API: d.APIAddr(), DataDir: d.n.Store().Dir(), Version: d.opts.Version}
}

// WriteReady prints the ready line on w and opens the stdio output, which
// holds every other line (and so the deliveries, by backpressure) until the
// ready line is out.
func (d *Daemon) WriteReady(w io.Writer) error {
	b, err := json.Marshal(d.Ready())
	if err != nil {
		return err
	}
	if d.out != nil && d.out.w == w {
		return d.out.writeFirst(b)
	}
	_, err = w.Write(append(b, '\n'))
	if d.out != nil {
		d.out.open()
	}
	return err
}

// Stop stops the API, the monitor and the node. It is idempotent: the first
// call starts the stop, which runs to its end; every call returns once it
// has ended (with its result), or with ctx's error when ctx ends first.
func (d *Daemon) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() { go d.stop() })
	select {
	case <-d.stopDone:
		return d.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopTimeout bounds the API's graceful shutdown.
const stopTimeout = 5 * time.Second

func (d *Daemon) stop() {
	defer close(d.stopDone)
	close(d.done)
	var errs []error
	if d.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		errs = append(errs, d.api.stop(ctx))
		cancel()
	}
	d.kcancel()
	if d.ep != nil {
		d.ep.Close()
	}
	d.wg.Wait()
	if d.elog != nil {
		d.elog.stop()
	}
	if err := d.n.Stop(context.Background()); err != nil {
		errs = append(errs, fmt.Errorf("stopping the node: %w", err))
	}
	d.stopErr = errors.Join(errs...)
}

// stopping reports whether Stop has begun.
func (d *Daemon) stopping() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}
