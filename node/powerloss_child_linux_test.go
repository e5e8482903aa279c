package node

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// Environment of a TestPowerLoss child process.
const (
	powerRoleEnv   = "OCAPNET_POWERLOSS_ROLE" // "sender" or "receiver"
	powerDirEnv    = "OCAPNET_POWERLOSS_DIR"
	powerSeedEnv   = "OCAPNET_POWERLOSS_SEED"
	powerListenEnv = "OCAPNET_POWERLOSS_LISTEN"
	powerPeerEnv   = "OCAPNET_POWERLOSS_PEER"
	powerSendEnv   = "OCAPNET_POWERLOSS_SEND" // "1": keep sending; else only finish
	powerBootEnv   = "OCAPNET_POWERLOSS_BOOT" // the sender's start number, part of each payload
)

// A child process runs before TestMain (which belongs to the crash test) and
// never returns.
func init() {
	if role := os.Getenv(powerRoleEnv); role != "" {
		os.Exit(powerChild(role))
	}
}

// powerChild runs one side of TestPowerLoss. Both print "ready" once
// started and "restarted" / "gaveup N" / "gap FROM TO" for those events.
// The sender prints "start NEXTSEQ" (the last sequence number its store
// remembers assigning), sends [SEQ,BOOT] payloads and prints "sent SEQ
// BOOT" after each Send returned; when finishing it prints "acked N" once
// nothing is unacknowledged, or "stuck N" if N messages are parked. The
// receiver prints "recv SEQ PARAMS R" for every delivery (R = 1 for a
// redelivery). Both run until killed.
func powerChild(role string) int {
	var out sync.Mutex
	say := func(format string, args ...any) error {
		out.Lock()
		defer out.Unlock()
		_, err := fmt.Fprintf(os.Stdout, format+"\n", args...)
		return err
	}
	opts := Options{
		Dir:        os.Getenv(powerDirEnv),
		KeySeed:    os.Getenv(powerSeedEnv),
		AckTimeout: time.Second,
		Transport: transport.Config{
			ListenAddrs:        []string{os.Getenv(powerListenEnv)},
			ReconnectBaseDelay: 10 * time.Millisecond,
			ReconnectMaxDelay:  100 * time.Millisecond,
			LivenessInterval:   -1,
			WakeInterval:       -1,
		},
	}
	h := Handler{
		OnMessage: func(m Message) error {
			r := 0
			if m.Redelivery {
				r = 1
			}
			return say("recv %d %s %d", m.Seq, m.Params, r)
		},
		OnEvent: func(e Event) {
			switch e := e.(type) {
			case PeerRestarted:
				say("restarted")
			case GaveUp:
				say("gaveup %d", len(e.Messages))
			case Gap:
				say("gap %d %d", e.From, e.To)
			}
		},
	}
	n, err := Start(context.Background(), opts, h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 3
	}
	say("ready")
	if role == "receiver" {
		for {
			time.Sleep(time.Hour) // until killed
		}
	}
	to, err := peer.AddrInfoFromString(os.Getenv(powerPeerEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 3
	}
	cur, _, err := n.Peer(to.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 3
	}
	next := cur.NextSeq
	say("start %d", next)
	boot := os.Getenv(powerBootEnv)
	for os.Getenv(powerSendEnv) == "1" {
		next++
		seq, err := n.Send(context.Background(), to.ID, "m", fmt.Appendf(nil, "[%d,%s]", next, boot), os.Getenv(powerPeerEnv))
		if err != nil || seq != next {
			fmt.Fprintln(os.Stderr, "send:", seq, next, err)
			return 3
		}
		say("sent %d %s", seq, boot)
	}
	n.Reconnect(to.ID, os.Getenv(powerPeerEnv))
	for {
		ps, _, _ := n.Peer(to.ID)
		switch {
		case ps.Unacked == 0:
			say("acked %d", ps.Acked)
			for {
				time.Sleep(time.Hour) // until killed
			}
		case ps.Parked > 0 && ps.Parked == ps.Unacked:
			say("stuck %d", ps.Parked)
			for {
				time.Sleep(time.Hour) // until killed
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the node's own state
	}
}
