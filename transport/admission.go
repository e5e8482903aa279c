package transport

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"
)

// Admission decides who gets a channel slot when MaxConnections channels are
// open, and bounds what an identity that has proven nothing can cost us.
//
// When the slots are full, a newcomer is not refused blindly: the least
// valuable channel makes room. A channel is evictable only if the layer
// above has nothing for its peer (not pinned, no Send waiting) and no
// handshake or drain is in progress on it. Among evictable channels, one of
// a peer the layer above does not know (Handler.Known) goes first, idle
// longest first. A newcomer the layer above knows (or one we dial because
// something needs it) may take the slot of any evictable channel, known or
// not; a newcomer nobody knows may take only the slot of an unknown peer
// whose channel has been idle for at least minIdleToEvict, so throwaway
// identities can push each other out but never a known peer, and never an
// unknown peer that is actually talking. docs/PROTOCOL.md ("Admission")
// says what an attacker with N identities can and cannot do.
const (
	// victimCandidates bounds the Known calls one admission makes.
	victimCandidates = 32
	// minIdleToEvict is how long an unknown peer's channel must have been
	// idle before an unknown newcomer may take its slot.
	minIdleToEvict = 2 * time.Second
	// peerTableSlack: when the peer table holds more than MaxConnections
	// times this, idle peers are forgotten as soon as their channel ends
	// instead of after StalePeerTimeout (identity floods).
	peerTableSlack = 2
)

// known asks the layer above whether it knows p (durable state or recent
// traffic). Called without locks.
func (t *Transport) known(p peer.ID) bool {
	return t.handler.Known != nil && t.handler.Known(p)
}

// admit makes sure a new channel to id has a slot, evicting the least
// valuable channel when the slots are full. wanted is true when the new
// channel is one we dial because something needs the peer (it counts as
// known). It returns ErrConnectionLimit when nothing may make room.
func (t *Transport) admit(id peer.ID, wanted bool) error {
	type cand struct {
		ch   *channel
		used int64
	}
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return ErrStopped
	}
	if p := t.peers[id]; (p != nil && p.ch != nil) || t.channels < t.opts.MaxConnections {
		t.mu.Unlock()
		return nil // a replacement needs no new slot, or there is room
	}
	var cands []cand
	for _, p := range t.peers {
		if ch := p.ch; ch != nil && p.id != id && !t.needsConnLocked(p) && p.gate == 0 {
			cands = append(cands, cand{ch, ch.lastUse.Load()})
		}
	}
	t.mu.Unlock()
	slices.SortFunc(cands, func(a, b cand) int { return int(a.used - b.used) })
	cands = cands[:min(len(cands), victimCandidates)]
	newKnown := wanted || t.known(id)
	idleBefore := time.Now().Add(-minIdleToEvict).UnixNano()
	var victim *channel
	for _, c := range cands {
		if !t.known(c.ch.p.id) && (newKnown || c.used < idleBefore) {
			victim = c.ch
			break
		}
	}
	if victim == nil && newKnown && len(cands) > 0 {
		victim = cands[0].ch // every candidate is known: the idlest makes room for a known newcomer
	}
	if victim == nil {
		t.metrics.admissionRefused.Inc()
		return fmt.Errorf("%w: %d channels open, none may make room for %s", ErrConnectionLimit, t.opts.MaxConnections, id)
	}
	t.mu.Lock()
	p := victim.p
	if p.ch != victim || t.needsConnLocked(p) || p.gate != 0 {
		t.mu.Unlock()
		return fmt.Errorf("%w: the channel chosen to make room changed; try again", ErrConnectionLimit)
	}
	t.detachLocked(p)
	p.lastErr = "evicted to make room for another peer (connection limit)"
	t.setStateLocked(p, StateIdle)
	t.metrics.evictions.Inc()
	t.mu.Unlock()
	t.sum.Info("evicted", "connection limit: evicted a channel to make room", "evicted", p.id, "for", id, "newcomerKnown", newKnown)
	_ = victim.s.Reset()
	return nil
}

// maybeForgetLocked drops an idle peer's state at once when an identity
// flood has filled the peer table (see peerTableSlack). Caller holds mu.
func (t *Transport) maybeForgetLocked(p *peerState) {
	if len(t.peers) > peerTableSlack*t.opts.MaxConnections && t.idleLocked(p) && len(p.hints) == 0 {
		delete(t.peers, p.id)
	}
}

// rateKeys bounds the per-address limiters kept: past it, the ones unused
// for longest are dropped (an unused limiter is full again anyway).
const rateKeys = 65536

// addrLimiter limits the rate of new connections and handshakes per source
// IP and per subnet (/24 for IPv4, /48 for IPv6). Loopback sources are
// exempt unless limitLoopback is set: they are this machine's own processes.
type addrLimiter struct {
	perIP, perSubnet rate.Limit
	limitLoopback    bool

	mu   sync.Mutex // guards keys
	keys map[string]*keyLimiter
}

type keyLimiter struct {
	lim  *rate.Limiter
	used time.Time
}

func newAddrLimiter(perIP, perSubnet rate.Limit, limitLoopback bool) *addrLimiter {
	return &addrLimiter{perIP: perIP, perSubnet: perSubnet, limitLoopback: limitLoopback, keys: map[string]*keyLimiter{}}
}

// allow reports whether one more connection or handshake from a may start.
// Addresses without an IP (a relayed circuit) are not limited here: the
// relay bounds them.
func (l *addrLimiter) allow(a ma.Multiaddr) bool {
	if a == nil {
		return true
	}
	if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return true // relayed: the address is the relay's, shared by every peer behind it
	}
	ip, err := manet.ToIP(a)
	if err != nil || (ip.IsLoopback() && !l.limitLoopback) {
		return true
	}
	var subnet *net.IPNet
	if v4 := ip.To4(); v4 != nil {
		subnet = &net.IPNet{IP: v4.Mask(net.CIDRMask(24, 32)), Mask: net.CIDRMask(24, 32)}
	} else {
		subnet = &net.IPNet{IP: ip.Mask(net.CIDRMask(48, 128)), Mask: net.CIDRMask(48, 128)}
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ipl, subl := l.limiterLocked("ip "+ip.String(), l.perIP, now), l.limiterLocked("net "+subnet.String(), l.perSubnet, now)
	if !ipl.AllowN(now, 1) {
		return false
	}
	if !subl.AllowN(now, 1) {
		return false
	}
	return true
}

func (l *addrLimiter) limiterLocked(key string, r rate.Limit, now time.Time) *rate.Limiter {
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= rateKeys {
			l.pruneLocked()
		}
		k = &keyLimiter{lim: rate.NewLimiter(r, max(1, int(2*r)))}
		l.keys[key] = k
	}
	k.used = now
	return k.lim
}

// pruneLocked drops the least recently used half of the limiters.
func (l *addrLimiter) pruneLocked() {
	type kv struct {
		k string
		t time.Time
	}
	all := make([]kv, 0, len(l.keys))
	for k, v := range l.keys {
		all = append(all, kv{k, v.used})
	}
	slices.SortFunc(all, func(a, b kv) int { return a.t.Compare(b.t) })
	for _, e := range all[:len(all)/2] {
		delete(l.keys, e.k)
	}
}
