// Package chaos is ocapnet's chaos suite: real relay and peer processes in
// network namespaces, each peer's data directory on a lazyfs mount, faults
// on a seeded schedule (SIGKILL, power loss, SIGSTOP of one peer or of the
// whole system with a wall-clock step, clock jumps, partitions, packet
// loss, bandwidth caps and stalls with nftables, delay spikes through a
// delaying proxy, relay restarts on pairs that can only talk through the
// relay, floods of hostile identities and malformed frames, simulated wake,
// intentional close), and a checker that fails on any loss, unmarked
// duplicate, reordering, gap, restart or relayed message sent directly,
// with self-tests showing it can fail. It needs root and runs under the
// build tag "chaos": go test -tags chaos -v ./test/chaos
// -chaos.profile=short (docs/RELIABILITY.md).
package chaos
