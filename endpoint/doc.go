// Package endpoint makes a Go process a citizen of an ocap-kernel network
// (kernel-protocol.md, "kp"): Go objects that JavaScript kernels (and other
// Go endpoints) can call through OCAP URLs, and references to remote objects
// that Go can call, on top of a *node.Node's durable, exactly-once, in-order
// delivery.
//
// An Endpoint keeps, per peer, an export table (Go's objects and promises,
// numbered by Go) and an import table (the peer's, numbered by the peer),
// each with separate object and promise counters (kp §1, §2), in the node's
// data directory (the store's KV area), so that they survive a restart of
// the process: a URL issued by ExportNamed still redeems, and a reference a
// peer holds to it still works, while the data directory (and so the
// node's incarnation) survives. References follow the sign rule of kp §2.3:
// Go writes its own allocations "+", the peer's "-".
//
// Every message sent carries a fresh result promise; every message received
// with a result gets exactly one resolution: the Go handler's value, or a
// rejection when it returns an error or panics. Messages are handed to each
// Go object one at a time, in the order they arrived. Every outgoing frame
// passes kernelwire.ValidateOutgoing against the tables, so nothing kp §3.7
// calls poison is sent. When a peer comes back with a new incarnation (kp
// §8.2) its imports are dropped, Go's exports to it are forgotten, and every
// call and redemption waiting on it is rejected with ErrPeerRestarted; when
// the node gives up on a peer they are rejected with ErrGaveUp: a Go caller
// never hangs on a peer that cannot answer (K3).
//
// Files by job: endpoint.go (lifecycle, the link to the node), tables.go
// (per-peer tables, the validator's State), persist.go (their layout in the
// store), values.go (Handler, Methods, Ref, Promise, errors), marshal.go
// (Go values ↔ CapData with slot translation), inbound.go (frames
// received), outbound.go (calls and the one sending path), results.go
// (object mailboxes, resolving results), redeem.go (Export, Redeem, URLs),
// gc.go (GC and BOYD frames), restart.go (incarnations, give-up, the start
// sweep).
package endpoint
