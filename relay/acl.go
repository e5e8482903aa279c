package relay

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// allowList is the relay's ACL when Options.AllowPeers is set: only listed
// peers may reserve, and only listed peers may open circuits (as source;
// a destination has a reservation, so it is listed).
type allowList map[peer.ID]struct{}

var _ relayv2.ACLFilter = allowList(nil)

func newAllowList(ids []peer.ID) allowList {
	a := allowList{}
	for _, id := range ids {
		a[id] = struct{}{}
	}
	return a
}

func (a allowList) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	_, ok := a[p]
	return ok
}

func (a allowList) AllowConnect(src peer.ID, _ ma.Multiaddr, _ peer.ID) bool {
	_, ok := a[src]
	return ok
}

// ReadAllowList reads peer IDs from a file: one per line; blank lines and
// text after # are ignored. An invalid ID is an error naming its line.
func ReadAllowList(path string) ([]peer.ID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []peer.ID
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		id, err := peer.Decode(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a peer ID: %w", path, n, line, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}
