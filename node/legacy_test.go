package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/wire"
)

// After a restart, a JavaScript peer (its channel lacked the close feature)
// that was active shortly before is given a channel by the node, although
// the node has nothing to send it: such a peer may hold messages for us
// while its own dials are rate limited (docs/PROTOCOL.md "Living with the
// JavaScript transport"). The peer here is a plain go-libp2p host speaking
// the wire protocol without features, as a JavaScript kernel does.
func TestJavaScriptPeerPromptedAfterRestart(t *testing.T) {
	var inbound atomic.Int64 // handshakes the peer received on streams we opened
	h, err := libp2p.New(libp2p.Identity(identity.Seed{0x66}.PrivateKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport), libp2p.DefaultSecurity, libp2p.DefaultMuxers,
		libp2p.DisableMetrics(), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(wire.ProtocolID, func(s network.Stream) {
		defer s.Reset()
		r := wire.NewReader(s, 0)
		if _, err := r.ReadFrame(); err != nil {
			return
		}
		inbound.Add(1)
		if wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{Ack: true, IncarnationID: "js-incarnation"})) != nil {
			return
		}
		for {
			if _, err := r.ReadFrame(); err != nil {
				return
			}
		}
	})
	jsAddr := h.Addrs()[0].String() + "/p2p/" + h.ID().String()

	dir := t.TempDir()
	n := start(t, fastOptions(dir))
	// The JavaScript peer dials, handshakes (no features) and sends one
	// message. (Its address, which a kernel learns from an OCAP URL's
	// hints, is stored below.)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := peer.AddrInfoFromString(n.addr(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, n.PeerID(), wire.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	r := wire.NewReader(s, 0)
	if err := wire.WriteFrame(s, wire.EncodeHandshake(wire.Handshake{IncarnationID: "js-incarnation"})); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(s, []byte(env(1))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(n.rec.messages()) == 1 })
	stop(t, n.Node)
	s.Reset()

	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx *store.Tx) error {
		rec, ok, err := tx.Peer(h.ID().String())
		if err != nil || !ok || !rec.Legacy {
			t.Errorf("stored record %+v (found %v, %v): not marked as a JavaScript peer", rec, ok, err)
		}
		rec.Hints = []string{jsAddr}
		return tx.PutPeer(h.ID().String(), rec)
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	before := inbound.Load()
	n2 := start(t, fastOptions(dir))
	waitFor(t, 10*time.Second, "the restarted node to open a channel to the JavaScript peer", func() bool { return inbound.Load() > before })
	if ps, _, _ := n2.Peer(h.ID()); ps.NextSeq != 0 {
		t.Fatalf("the node had something to send (%d): not the case under test", ps.NextSeq)
	}
}
