// Package chaos is ocapnet's chaos suite: real relay and peer processes in
// network namespaces, faults on a seeded schedule (SIGKILL, SIGSTOP,
// partitions and packet loss with nftables, relay restarts, simulated wake,
// intentional close), and a checker that fails on any loss, unmarked
// duplicate or reordering. It needs root and runs under the build tag
// "chaos": go test -tags chaos -v ./test/chaos -chaos.profile=short
// (docs/RELIABILITY.md).
package chaos
