package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// ResetBackoffs resets every peer's backoff and failure state and cuts every
// backoff wait in progress short, so reconnection starts at once; a peer
// that gave up is dialled again if something needs it. The wake detector
// calls it.
func (t *Transport) ResetBackoffs() {
	t.mu.Lock()
	for _, p := range t.peers {
		p.attempt = 0
		p.failed = false
		p.history = nil
		if p.gaveUp && t.needsConnLocked(p) {
			p.gaveUp = false
			t.ensureConnectorLocked(p)
		}
		poke(p.wake)
	}
	t.mu.Unlock()
	for _, r := range t.relays {
		poke(r.poke)
	}
}

func (t *Transport) onWake(gap time.Duration) {
	t.log.Info("wake from sleep detected: resetting backoffs", "gap", gap)
	t.ResetBackoffs()
	t.events.Push(WakeDetected{Gap: gap})
}

// livenessLoop pings every peer with a channel each LivenessInterval; a
// failed ping closes that connection, so its channel fails and is
// reconnected if something needs the peer. Nothing new is written on the
// `whatever` stream.
func (t *Transport) livenessLoop() {
	ticker := time.NewTicker(t.opts.LivenessInterval)
	defer ticker.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-ticker.C:
		}
		t.mu.Lock()
		var chans []*channel
		for _, p := range t.peers {
			if p.ch != nil {
				chans = append(chans, p.ch)
			}
		}
		t.mu.Unlock()
		var round sync.WaitGroup
		for _, ch := range chans {
			round.Add(1)
			go func() {
				defer round.Done()
				t.checkLiveness(ch)
			}()
		}
		round.Wait()
	}
}

func (t *Transport) checkLiveness(ch *channel) {
	ctx, cancel := context.WithTimeout(t.ctx, t.opts.LivenessTimeout)
	defer cancel()
	res, ok := <-ping.Ping(network.WithNoDial(network.WithAllowLimitedConn(ctx, "ocapnet-liveness"), "liveness"), t.h, ch.p.id)
	if ok && res.Error == nil {
		return
	}
	if t.ctx.Err() != nil {
		return
	}
	err := errors.New("liveness check timed out")
	if ok && res.Error != nil {
		err = fmt.Errorf("liveness check failed: %w", res.Error)
	}
	t.sum.Info("unresponsive", "peer unresponsive: closing its connection", "peer", ch.p.id, "err", err)
	_ = ch.s.Conn().Close()
	t.channelFailed(ch, err)
}

// cleanupLoop forgets peers that have been idle (no channel, pin, waiting
// Send, dial or close flag) for StalePeerTimeout, so state cannot grow
// without bound. It never touches a peer with anything in progress.
func (t *Transport) cleanupLoop() {
	ticker := time.NewTicker(t.opts.CleanupInterval)
	defer ticker.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-ticker.C:
		}
		now := t.opts.Now()
		t.mu.Lock()
		for id, p := range t.peers {
			if p.ch == nil && !p.dialing && !t.needsConnLocked(p) && !p.closed && !p.closedByPeer &&
				p.gate == 0 && now.Sub(p.lastActive) > t.opts.StalePeerTimeout {
				delete(t.peers, id)
			}
		}
		t.mu.Unlock()
	}
}
