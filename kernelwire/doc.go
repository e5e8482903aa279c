// Package kernelwire encodes and decodes the kernel-layer messages that
// ride in the params of the seq/ack envelope (package wire encodes the
// envelope itself), as the JavaScript ocap-kernel writes and reads them
// (kernel-protocol.md §2–§3): remote references (RRefs) and their sign
// rule; deliver message, notify, dropExports, retireExports,
// retireImports and bringOutYourDead; redeemURL and redeemURLReply.
//
// Encode writes a message's method and params byte for byte as the
// JavaScript kernel does. Decode reads them strictly, with errors that
// name what was wrong. ValidateOutgoing refuses every message that §3.7
// calls poison — one the JavaScript kernel would throw on while applying,
// so that it never acknowledges the frame, the frame is retransmitted and
// the peer finally gives up — and a few more that are never meaningful;
// an endpoint calls it (or EncodeOutgoing) on everything it sends.
//
// # The sign rule
//
// On the wire, "+" marks a reference allocated by the frame's sender and
// "-" one allocated by its receiver (§2.3): Go sends its own allocation N
// as ro+N / rp+N and the peer's allocation M as ro-M / rp-M, and reads an
// incoming "+M" as the peer's M and "-N" as its own N. Send and
// RRef.AllocatedBy apply the rule. The GC frames the JavaScript kernel
// sends break it (§5.2): there the table is chosen by the message, not the
// sign (see DropExports, RetireExports and RetireImports).
//
// The package is pure: no I/O.
package kernelwire
