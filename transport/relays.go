package transport

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"

	"github.com/ocapnet/ocapnet/internal/backoff"
)

// relayState is the reservation keeper of one relay.
type relayState struct {
	info peer.AddrInfo
	poke chan struct{} // cap 1: renew or re-dial now

	mu     sync.Mutex // guards status
	status RelayStatus
}

func (r *relayState) snapshot() RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Relay = r.info.ID
	return s
}

// Relays returns the reservation state of every configured relay.
func (t *Transport) Relays() []RelayStatus {
	out := make([]RelayStatus, 0, len(t.relays))
	for _, r := range t.relays {
		out = append(out, r.snapshot())
	}
	return out
}

// keepRelay holds a reservation on one relay: it reserves right at start,
// renews before expiry and whenever the relay disconnects, and re-dials a
// lost or unreachable relay with backoff forever (upstream gives up after 10
// tries, W19).
func (t *Transport) keepRelay(r *relayState) {
	policy := backoff.Policy{Base: t.opts.RelayRedialBase, Max: t.opts.RelayRedialMax}
	attempt := 0
	for t.ctx.Err() == nil {
		if sw, ok := t.h.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(r.info.ID)
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.opts.DialTimeout)
		res, err := client.Reserve(ctx, t.h, r.info)
		cancel()
		var wait time.Duration
		r.mu.Lock()
		if err == nil {
			attempt = 0
			r.status = RelayStatus{Reserved: true, Expires: res.Expiration}
			wait = max(time.Until(res.Expiration)*3/4, time.Second)
			t.log.Info("relay reservation", "relay", r.info.ID, "expires", res.Expiration)
		} else {
			attempt++
			wait = policy.Delay(attempt)
			r.status = RelayStatus{Attempt: attempt, NextTry: time.Now().Add(wait), LastError: err.Error()}
			if t.ctx.Err() == nil {
				// Work is blocked while no relay holds a reservation for us.
				t.sum.Warn("relay-reservation:"+r.info.ID.String(), "relay reservation failed", "relay", r.info.ID, "attempt", attempt, "retry", wait, "err", oneLine(err))
			}
		}
		r.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-t.ctx.Done():
		case <-r.poke: // disconnected or woke up: renew or re-dial now
		case <-timer.C:
		}
		timer.Stop()
	}
}

// watchConnectedness forwards relay disconnections to their keepers.
func (t *Transport) watchConnectedness(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-t.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected || ev.Connectedness == network.Limited {
				continue
			}
			for _, r := range t.relays {
				if r.info.ID == ev.Peer {
					poke(r.poke)
				}
			}
		}
	}
}

// oneLine joins a multi-line error (go-libp2p's dial errors list one address
// per line) into one line for logs and status.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
