package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/store"
)

// Options configures an Endpoint. Zero fields take the documented
// defaults; New refuses negative durations with ErrInvalidOptions.
type Options struct {
	// RedeemTimeout bounds how long Redeem waits for the issuer's reply
	// (kp §7.4). Default 40 s, the JavaScript redeemer's bound.
	RedeemTimeout time.Duration
	// Hints are the relay multiaddrs put in issued URLs. Default: the first
	// three of the store's relay pool (bootstrap relays first, kp §7.3).
	Hints []string
	// OnMessage receives the node's messages that are not kernel messages
	// (methods other than deliver, redeemURL and redeemURLReply). Default:
	// they are logged and accepted.
	OnMessage func(node.Message) error
	// OnEvent receives every node event after the endpoint has seen it.
	OnEvent func(node.Event)
	// Objects are bound by name (as ExportNamed does) before the first
	// inbound message is applied, so that after a restart peers' calls to
	// them, and redemptions of their URLs, never find them missing. Their
	// URLs come from ExportNamed. Default none.
	Objects map[string]Handler
	// Bind, when set, is asked at start for the object of every name
	// exported with ExportNamed by an earlier process and not in Objects;
	// a nil answer leaves the name unbound. Default none.
	Bind func(name string) Handler
	// Logger receives the endpoint's logs. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.RedeemTimeout < 0 {
		return o, fmt.Errorf("%w: RedeemTimeout is negative (%v)", ErrInvalidOptions, o.RedeemTimeout)
	}
	if o.RedeemTimeout == 0 {
		o.RedeemTimeout = 40 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// link is what the endpoint needs of the node (a *node.Node in
// production; the transcript test records frames instead).
type link interface {
	SendMessage(ctx context.Context, m node.Outgoing) (uint64, error)
	Discard(id peer.ID) (int, error)
	// Incarnation is the peer's incarnation from its last handshake.
	Incarnation(id peer.ID) string
	PeerID() peer.ID
	Store() *store.Store
}

type nodeLink struct{ *node.Node }

func (l nodeLink) Incarnation(id peer.ID) string { return l.Transport().Peer(id).Incarnation }

// Endpoint is a kernel endpoint on a node. Create it with New and attach
// it to the node started with its Handler (or use Start).
type Endpoint struct {
	opts Options
	log  *slog.Logger

	ready    chan struct{} // closed by Attach (or Stop)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine the endpoint starts
	stopOnce sync.Once

	l    link
	st   *store.Store
	self peer.ID
	node *node.Node // nil in the transcript test
	owns bool       // Start started the node: Stop stops it

	// mu guards the tables and the object registry; it is held while their
	// changes are written to the store (writes.flush), never while calling
	// the node.
	mu      sync.Mutex
	stopped bool
	peers   map[peer.ID]*peerTab
	objects map[string]*localObj // by key: every local object a peer may name
	byID    map[any]*localObj    // by identity of the Handler
	records map[string]objRecord // key → URL record
	oids    map[string]string    // oid → key
	locals  map[string]*Promise  // local promises by key
	hooked  map[string]bool      // local promises watched for settling
}

// New returns an endpoint to attach to a node: start the node with
// ep.Handler(), then call ep.Attach(node).
func New(opts Options) (*Endpoint, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{
		opts: opts, log: opts.Logger, ready: make(chan struct{}),
		peers: map[peer.ID]*peerTab{}, objects: map[string]*localObj{}, byID: map[any]*localObj{},
		records: map[string]objRecord{}, oids: map[string]string{}, locals: map[string]*Promise{}, hooked: map[string]bool{},
	}
	ep.ctx, ep.cancel = context.WithCancel(context.Background())
	return ep, nil
}

// Handler returns the node handler through which the endpoint receives
// kernel messages and events. Inbound messages wait until Attach.
func (ep *Endpoint) Handler() node.Handler {
	return node.Handler{OnMessage: ep.onNodeMessage, OnEvent: ep.onEvent}
}

// Attach binds the endpoint to the node it was started with, loads the
// tables from the node's store and rejects what a previous process left
// pending (restart.go).
func (ep *Endpoint) Attach(n *node.Node) error {
	ep.node = n
	return ep.attach(nodeLink{n})
}

func (ep *Endpoint) attach(l link) error {
	l0, err := load(l.Store())
	if err != nil {
		return fmt.Errorf("endpoint: loading tables: %w", err)
	}
	ep.mu.Lock()
	ep.l, ep.st, ep.self = l, l.Store(), l.PeerID()
	ep.peers, ep.records, ep.oids = l0.peers, l0.objects, l0.oids
	for name, h := range ep.opts.Objects {
		if _, err := ep.registerLocked(h, "n/"+name); err != nil {
			ep.mu.Unlock()
			return err
		}
	}
	if ep.opts.Bind != nil {
		for key := range ep.records {
			name, ok := strings.CutPrefix(key, "n/")
			if !ok || ep.objects[key] != nil {
				continue
			}
			if h := ep.opts.Bind(name); h != nil {
				if _, err := ep.registerLocked(h, key); err != nil {
					ep.mu.Unlock()
					return err
				}
			}
		}
	}
	ep.mu.Unlock()
	close(ep.ready)
	ep.sweep()
	return nil
}

// Start starts a node on nopts with the endpoint's handler and attaches
// the endpoint. Stop stops both.
func Start(ctx context.Context, nopts node.Options, opts Options) (*Endpoint, error) {
	ep, err := New(opts)
	if err != nil {
		return nil, err
	}
	n, err := node.Start(ctx, nopts, ep.Handler())
	if err != nil {
		ep.stop()
		return nil, err
	}
	if err := ep.Attach(n); err != nil {
		ep.stop()
		_ = n.Stop(ctx)
		return nil, err
	}
	ep.owns = true
	return ep, nil
}

// Node returns the node the endpoint is attached to.
func (ep *Endpoint) Node() *node.Node { return ep.node }

// PeerID returns this endpoint's peer ID.
func (ep *Endpoint) PeerID() peer.ID { return ep.self }

// Stop stops the endpoint (pending calls are abandoned, not rejected:
// their results may still come to a later process) and, if Start started
// it, the node.
func (ep *Endpoint) Stop(ctx context.Context) error {
	ep.stop()
	if ep.owns {
		return ep.node.Stop(ctx)
	}
	return nil
}

// Close stops the endpoint but not the node (for an endpoint attached
// with Attach; stop the node after). Inbound kernel messages are then
// refused, so they are offered again to the next process.
func (ep *Endpoint) Close() { ep.stop() }

// stop ends the endpoint's goroutines. Handlers still running get a
// cancelled context and their results are dropped.
func (ep *Endpoint) stop() {
	ep.stopOnce.Do(func() {
		ep.mu.Lock()
		ep.stopped = true
		ep.mu.Unlock()
		select {
		case <-ep.ready:
		default:
			close(ep.ready)
		}
		ep.cancel()
		ep.wg.Wait()
	})
}

// goRun runs f in a goroutine the endpoint owns, unless it is stopped
// (then it reports false).
func (ep *Endpoint) goRun(f func()) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stopped {
		return false
	}
	ep.wg.Add(1)
	go func() {
		defer ep.wg.Done()
		f()
	}()
	return true
}

// tab returns id's tables, creating them. Called with mu held.
func (ep *Endpoint) tab(id peer.ID) *peerTab {
	t := ep.peers[id]
	if t == nil {
		t = newPeerTab(id)
		ep.peers[id] = t
	}
	return t
}

// tagOf is the tag kept with an outgoing kernel frame.
func tagOf(kind string) json.RawMessage { return json.RawMessage(`{"endpoint":"` + kind + `"}`) }

// IsFrameTag reports whether a node message tag (in Acknowledged and
// GaveUp events) marks a frame the endpoint sent.
func IsFrameTag(tag json.RawMessage) bool { return bytes.HasPrefix(tag, []byte(`{"endpoint":`)) }
