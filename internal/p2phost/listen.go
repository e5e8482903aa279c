package p2phost

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// ErrListen is wrapped by every *ListenError.
var ErrListen = errors.New("cannot listen")

// AddrError is one listen address that could not be bound, and why. Err
// unwraps to the system error (errors.Is(err, syscall.EADDRINUSE) for a
// port another process holds).
type AddrError struct {
	Addr string
	Err  error
}

// ListenError lists the listen addresses New could not bind. go-libp2p
// itself starts when any one address works and only logs the others; New
// fails instead.
type ListenError struct {
	Addrs []AddrError
}

func (e *ListenError) Error() string {
	var b strings.Builder
	b.WriteString("p2phost: cannot listen on ")
	for i, a := range e.Addrs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", a.Addr, a.Err)
	}
	return b.String()
}

// Unwrap returns ErrListen and each address's error.
func (e *ListenError) Unwrap() []error {
	errs := []error{ErrListen}
	for _, a := range e.Addrs {
		errs = append(errs, a.Err)
	}
	return errs
}

// listen binds every address on h, one at a time so that each failure is
// known, in the order go-libp2p's swarm uses (transports that share a
// socket with another, such as WebRTC-direct on a QUIC port, come after
// it). It returns a *ListenError for the addresses that failed.
func listen(h host.Host, addrs []string) error {
	type item struct {
		s     string
		a     ma.Multiaddr
		order int
	}
	sw, _ := h.Network().(*swarm.Swarm)
	items := make([]item, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return &ListenError{Addrs: []AddrError{{Addr: s, Err: err}}}
		}
		it := item{s: s, a: a}
		if sw != nil {
			if o, ok := sw.TransportForListening(a).(swarm.OrderedListener); ok {
				it.order = o.ListenOrder()
			}
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(x, y item) int { return x.order - y.order })
	var failed []AddrError
	for _, it := range items {
		if slices.ContainsFunc(h.Network().ListenAddresses(), it.a.Equal) {
			continue // bound already: the relay client listens on /p2p-circuit itself
		}
		var err error
		if sw != nil {
			err = sw.AddListenAddr(it.a) // the transport's own error, not a summary
		} else {
			err = h.Network().Listen(it.a)
		}
		if err != nil {
			failed = append(failed, AddrError{Addr: it.s, Err: err})
		}
	}
	if len(failed) > 0 {
		return &ListenError{Addrs: failed}
	}
	return nil
}

// NotListening returns the addresses of want that h does not listen on
// (none when all are bound). A port 0 in want matches any port; the
// certificate hashes WebTransport and WebRTC-direct append are ignored.
func NotListening(h host.Host, want []string) []string {
	bound := h.Network().ListenAddresses()
	var missing []string
	for _, s := range want {
		w, err := ma.NewMultiaddr(s)
		if err != nil || !slices.ContainsFunc(bound, func(b ma.Multiaddr) bool { return listenMatches(w, b) }) {
			missing = append(missing, s)
		}
	}
	return missing
}

// listenMatches reports whether the bound listener address got serves the
// configured address want.
func listenMatches(want, got ma.Multiaddr) bool {
	var g []ma.Component
	for _, c := range got {
		if c.Protocol().Code != ma.P_CERTHASH {
			g = append(g, c)
		}
	}
	w := []ma.Component(want)
	if len(w) != len(g) {
		return false
	}
	for i := range w {
		if w[i].Protocol().Code != g[i].Protocol().Code {
			return false
		}
		port := w[i].Protocol().Code == ma.P_TCP || w[i].Protocol().Code == ma.P_UDP
		if w[i].Value() != g[i].Value() && !(port && w[i].Value() == "0") {
			return false
		}
	}
	return true
}
