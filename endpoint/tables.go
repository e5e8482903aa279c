package endpoint

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
)

// exportEntry is one of Go's allocations for a peer (sent as r?+N).
type exportEntry struct {
	// Key names the local object or promise ("" for a result promise).
	Key string `json:"k,omitempty"`
	// Result: a promise allocated as the result of a message Go sent.
	Result bool `json:"r,omitempty"`
	// Resolved: a result the peer resolved, or a local promise whose
	// resolution Go sent.
	Resolved bool `json:"s,omitempty"`
	// Dropped: the peer sent dropExports for it (objects).
	Dropped bool `json:"d,omitempty"`
}

// importEntry is one of the peer's allocations Go holds (sent as r?-M).
type importEntry struct {
	Iface string `json:"i,omitempty"`
	// Decide: a result promise of a message the peer sent, which Go
	// resolves exactly once.
	Decide bool `json:"c,omitempty"`
	// Resolved: Go sent its resolution (Decide), or the peer did.
	Resolved bool `json:"s,omitempty"`
}

// peerMeta is a peer's counters and positions.
type peerMeta struct {
	// NextObject and NextPromise are the last numbers Go allocated.
	NextObject  uint64 `json:"o,omitempty"`
	NextPromise uint64 `json:"p,omitempty"`
	// Inc is the peer's incarnation the tables belong to.
	Inc string `json:"inc,omitempty"`
	// Applied is the last inbound sequence number applied.
	Applied uint64 `json:"a,omitempty"`
}

// peerTab is the endpoint's state for one peer. Guarded by Endpoint.mu,
// except sendMu.
type peerTab struct {
	id   peer.ID
	meta peerMeta

	exports map[kernelwire.Kind]map[uint64]*exportEntry
	byKey   map[string]uint64 // local key → export number (kind from the key)
	imports map[kernelwire.Kind]map[uint64]*importEntry

	// In memory only.
	fresh     map[uint64]bool        // result promises allocated, not yet sent
	awaiting  map[string]bool        // the peer's redeemURL keys not yet answered
	calls     map[uint64]*Promise    // Go's pending results by promise number
	redeems   map[string]*redeemWait // Go's pending redemptions by reply key
	nextKey   uint64                 // last reply key Go used
	promises  map[uint64]*Promise    // the peer's promises handed to Go code
	resolving map[uint64]bool        // Decide results being resolved right now
	// epoch counts the resets of the tables (the peer's new
	// incarnations): a Ref or Promise of an earlier epoch is stale even if
	// the new incarnation reuses its number.
	epoch uint64

	// sendMu orders preparing and sending frames to this peer (never taken
	// by the inbound path).
	sendMu sync.Mutex
}

func newPeerTab(id peer.ID) *peerTab {
	return &peerTab{
		id:        id,
		exports:   map[kernelwire.Kind]map[uint64]*exportEntry{kernelwire.Object: {}, kernelwire.Promise: {}},
		byKey:     map[string]uint64{},
		imports:   map[kernelwire.Kind]map[uint64]*importEntry{kernelwire.Object: {}, kernelwire.Promise: {}},
		fresh:     map[uint64]bool{},
		awaiting:  map[string]bool{},
		calls:     map[uint64]*Promise{},
		redeems:   map[string]*redeemWait{},
		promises:  map[uint64]*Promise{},
		resolving: map[uint64]bool{},
	}
}

// kernelwire.State, for the outgoing validator. Called with Endpoint.mu
// held.

func (t *peerTab) Imported(k kernelwire.Kind, n uint64) bool { return t.imports[k][n] != nil }

func (t *peerTab) CanResolve(p kernelwire.RRef) bool {
	if !p.Plus {
		e := t.imports[kernelwire.Promise][p.N]
		return e != nil && e.Decide && !e.Resolved
	}
	e := t.exports[kernelwire.Promise][p.N]
	return e != nil && !e.Result && !e.Resolved
}

func (t *peerTab) FreshResult(n uint64) bool     { return t.fresh[n] }
func (t *peerTab) AwaitingReply(key string) bool { return t.awaiting[key] }
func (t *peerTab) DroppedImport(uint64) bool     { return false } // Go sends no GC (kp §10 MAY)
func (t *peerTab) PeerDroppedExport(n uint64) bool {
	e := t.exports[kernelwire.Object][n]
	return e != nil && e.Dropped
}

// allocExport allocates Go's next number of kind k for e and returns it.
func (t *peerTab) allocExport(k kernelwire.Kind, e *exportEntry, w *writes) uint64 {
	var n uint64
	if k == kernelwire.Object {
		t.meta.NextObject++
		n = t.meta.NextObject
	} else {
		t.meta.NextPromise++
		n = t.meta.NextPromise
	}
	t.exports[k][n] = e
	if e.Key != "" {
		t.byKey[e.Key] = n
	}
	w.putMeta(t)
	w.putExport(t, k, n, e)
	return n
}

// exportKey returns the number of local key (object or promise) for this
// peer, allocating it on first use (re-sending reuses it, kp §2.5).
func (t *peerTab) exportKey(k kernelwire.Kind, key string, w *writes) uint64 {
	if n, ok := t.byKey[key]; ok && t.exports[k][n] != nil {
		return n
	}
	return t.allocExport(k, &exportEntry{Key: key}, w)
}

// importRef records the peer's allocation n of kind k, if new.
func (t *peerTab) importRef(k kernelwire.Kind, n uint64, iface string, w *writes) *importEntry {
	if e := t.imports[k][n]; e != nil {
		if e.Iface == "" && iface != "" {
			e.Iface = iface
			w.putImport(t, k, n, e)
		}
		return e
	}
	e := &importEntry{Iface: iface}
	t.imports[k][n] = e
	w.putImport(t, k, n, e)
	return e
}
