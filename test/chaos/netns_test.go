//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
)

// netns is a star of network namespaces: a hub with a bridge, and one
// namespace per node joined to it by a veth pair, on a random 10.77.x.0/24.
// Faults are nftables drops on each node's input chain (a silent partition;
// tc netem is not available on these machines).
type netns struct {
	prefix string
	hub    string
	ns     []string
	ip     []string
	mu     sync.Mutex
	drops  map[[2]int]int // (node, from node) → drop percentage
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
	n := &netns{prefix: fmt.Sprintf("ocn%06x", id), drops: map[[2]int]int{}}
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
			[]string{"ip", "netns", "exec", ns, "nft", "add table inet chaos"},
			[]string{"ip", "netns", "exec", ns, "nft", "add chain inet chaos input { type filter hook input priority 0 ; policy accept ; }"},
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

// apply rewrites node i's input chain from the current drops.
func (n *netns) applyLocked(i int) error {
	var rules []string
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
	script := "flush chain inet chaos input\n" + strings.Join(rules, "\n") + "\n"
	cmd := exec.Command("ip", "netns", "exec", n.ns[i], "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", n.ns[i], err, out)
	}
	return nil
}

// drop makes nodes i and j drop pct % of each other's packets (100: a
// silent partition).
func (n *netns) drop(i, j, pct int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drops[[2]int{i, j}] = pct
	n.drops[[2]int{j, i}] = pct
	if err := n.applyLocked(i); err != nil {
		return err
	}
	return n.applyLocked(j)
}

func (n *netns) heal(i, j int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.drops, [2]int{i, j})
	delete(n.drops, [2]int{j, i})
	if err := n.applyLocked(i); err != nil {
		return err
	}
	return n.applyLocked(j)
}

func (n *netns) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drops = map[[2]int]int{}
	for i := range n.ns {
		n.applyLocked(i)
	}
}

// cleanup deletes every namespace (and with them the veths and rules).
func (n *netns) cleanup() {
	for _, ns := range append(n.ns, n.hub) {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}
