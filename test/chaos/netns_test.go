//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// netns is a star of network namespaces: a hub with a bridge, and one
// namespace per node joined to it by a veth pair, on a random 10.77.x.0/24.
// Everything is done with nftables rules on each node's input chain (tc
// netem is not available on these machines):
//   - blocks: permanent drops of all traffic between two nodes (relayed
//     pairs: they can reach each other only through the relay);
//   - drops: a fault's silent partition (100 %) or random loss (< 100 %);
//   - caps: a fault's bandwidth cap, bytes per second from one node.
type netns struct {
	prefix string
	hub    string
	ns     []string
	ip     []string
	mu     sync.Mutex
	blocks map[[2]int]bool // (node, from node)
	drops  map[[2]int]int  // (node, from node) → drop percentage
	caps   map[[2]int]int  // (node, from node) → bytes per second
}

// inNS returns a command that runs in network namespace ns. It enters only
// the network namespace (nsenter), unlike ip netns exec, which also makes
// a new mount namespace: that one would hold copies of the peers' lazyfs
// mounts, keep them alive after they are unmounted and hang a power cut.
func inNS(ns string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, args...)...)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newNetns(rng *rand.Rand, count int) (*netns, error) {
	id := rng.Uint32() & 0xffffff
	subnet := fmt.Sprintf("10.77.%d", 1+rng.IntN(250))
	n := &netns{prefix: fmt.Sprintf("ocn%06x", id), blocks: map[[2]int]bool{}, drops: map[[2]int]int{}, caps: map[[2]int]int{}}
	n.hub = n.prefix + "-hub"
	cmds := [][]string{
		{"ip", "netns", "add", n.hub},
		{"ip", "-n", n.hub, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", n.hub, "link", "set", "br0", "up"},
	}
	for i := 0; i < count; i++ {
		ns := fmt.Sprintf("%s-%d", n.prefix, i)
		ip := fmt.Sprintf("%s.%d", subnet, 10+i)
		n.ns = append(n.ns, ns)
		n.ip = append(n.ip, ip)
		a, b := fmt.Sprintf("%sa%d", n.prefix, i), fmt.Sprintf("%sb%d", n.prefix, i)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", a, "type", "veth", "peer", "name", b},
			[]string{"ip", "link", "set", a, "netns", ns},
			[]string{"ip", "link", "set", b, "netns", n.hub},
			[]string{"ip", "-n", n.hub, "link", "set", b, "master", "br0"},
			[]string{"ip", "-n", n.hub, "link", "set", b, "up"},
			[]string{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", a},
			[]string{"ip", "-n", ns, "link", "set", a, "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"nsenter", "--net=/run/netns/" + ns, "--", "nft", "add table inet chaos"},
			[]string{"nsenter", "--net=/run/netns/" + ns, "--", "nft", "add chain inet chaos input { type filter hook input priority 0 ; policy accept ; }"},
		)
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			n.cleanup()
			return nil, err
		}
	}
	return n, nil
}

// rulesLocked returns node i's input rules, sorted (deterministic).
func (n *netns) rulesLocked(i int) []string {
	var rules []string
	for k := range n.blocks {
		if k[0] == i {
			rules = append(rules, fmt.Sprintf("add rule inet chaos input ip saddr %s drop", n.ip[k[1]]))
		}
	}
	for k, pct := range n.drops {
		if k[0] != i {
			continue
		}
		if pct >= 100 {
			rules = append(rules, fmt.Sprintf("add rule inet chaos input ip saddr %s drop", n.ip[k[1]]))
		} else {
			rules = append(rules, fmt.Sprintf("add rule inet chaos input ip saddr %s numgen random mod 100 < %d drop", n.ip[k[1]], pct))
		}
	}
	for k, bps := range n.caps {
		if k[0] == i {
			rules = append(rules, fmt.Sprintf("add rule inet chaos input ip saddr %s limit rate over %d bytes/second drop", n.ip[k[1]], bps))
		}
	}
	sort.Strings(rules)
	return rules
}

// applyLocked rewrites node i's input chain from the current rules.
func (n *netns) applyLocked(i int) error {
	script := "flush chain inet chaos input\n" + strings.Join(n.rulesLocked(i), "\n") + "\n"
	cmd := inNS(n.ns[i], "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", n.ns[i], err, out)
	}
	return nil
}

// ruleCount returns how many rules node i's input chain holds now, read
// back from nftables (so a test can see the rules really are in place).
func (n *netns) ruleCount(i int) (int, error) {
	out, err := inNS(n.ns[i], "nft", "list", "chain", "inet", "chaos", "input").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("nft list in %s: %v: %s", n.ns[i], err, out)
	}
	return strings.Count(string(out), " drop"), nil
}

func (n *netns) both(i, j int, f func(a, b int)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(i, j)
	f(j, i)
	if err := n.applyLocked(i); err != nil {
		return err
	}
	return n.applyLocked(j)
}

// block drops all traffic between nodes i and j for the whole run.
func (n *netns) block(i, j int) error {
	return n.both(i, j, func(a, b int) { n.blocks[[2]int{a, b}] = true })
}

// drop makes nodes i and j drop pct % of each other's packets (100: a
// silent partition).
func (n *netns) drop(i, j, pct int) error {
	return n.both(i, j, func(a, b int) { n.drops[[2]int{a, b}] = pct })
}

// limit caps the traffic between nodes i and j at bps bytes per second in
// each direction (packets over the rate are dropped).
func (n *netns) limit(i, j, bps int) error {
	return n.both(i, j, func(a, b int) { n.caps[[2]int{a, b}] = bps })
}

// heal removes the faults (drops and caps) between i and j; blocks stay.
func (n *netns) heal(i, j int) error {
	return n.both(i, j, func(a, b int) { delete(n.drops, [2]int{a, b}); delete(n.caps, [2]int{a, b}) })
}

func (n *netns) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drops = map[[2]int]int{}
	n.caps = map[[2]int]int{}
	for i := range n.ns {
		n.applyLocked(i)
	}
}

// cleanup deletes every namespace (and with them the veths and the nftables
// tables, which live in the namespaces).
func (n *netns) cleanup() {
	for _, ns := range append(n.ns, n.hub) {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}
