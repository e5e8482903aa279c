// Package storetest is test support, not for production use: it fills a
// store with a large backlog of pending messages quickly, so that
// benchmarks in other packages can measure what a start with that backlog
// costs (for example node start time with 1,000,000 messages across 1,000
// peers).
//
//	st, _ := store.Open(dir, store.Options{})
//	err := storetest.Fill(st, storetest.Backlog{Peers: 1000, Messages: 1_000_000})
//	st.Close()
//	// ... start a node on dir and time it.
//
// Fill writes through the store's public API (AppendOut, ParkOut) in large
// transactions, so the file is exactly what a node that sent those messages
// would have left, only written faster.
package storetest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
)

// Backlog describes the pending messages Fill writes. Zero fields take the
// defaults; negative ones are refused.
type Backlog struct {
	// Peers is how many peers the messages go to (required, > 0). Peer i
	// has the ID PeerID(i).
	Peers int
	// Messages is the total number of pending messages, spread evenly
	// over the peers (the first Messages%Peers peers get one more).
	Messages int
	// ParamsSize is the size in bytes of each message's params, a JSON
	// string. Default 100; at least 4.
	ParamsSize int
	// Parked is how many messages at the front of each peer's log are
	// parked (handed back in a give-up). Default 0.
	Parked int
	// TxSize is how many messages one transaction writes. Default 50,000.
	TxSize int
}

// PeerID returns the ID of peer i: a valid libp2p peer ID (Ed25519, from a
// seed derived from i), so that a node loading the store accepts it.
func PeerID(i int) string {
	var seed identity.Seed
	seed[0] = 0x5e
	binary.BigEndian.PutUint64(seed[len(seed)-8:], uint64(i))
	return seed.PeerID().String()
}

func (b Backlog) withDefaults() (Backlog, error) {
	if b.Peers <= 0 || b.Messages < 0 || b.ParamsSize < 0 || b.Parked < 0 || b.TxSize < 0 {
		return b, fmt.Errorf("storetest: invalid backlog %+v", b)
	}
	if b.ParamsSize == 0 {
		b.ParamsSize = 100
	}
	if b.ParamsSize < 4 {
		return b, fmt.Errorf("storetest: ParamsSize %d < 4", b.ParamsSize)
	}
	if b.TxSize == 0 {
		b.TxSize = 50_000
	}
	return b, nil
}

// Fill appends b's messages to s: for each peer in turn, its share of the
// messages (method "deliver", params a JSON string of ParamsSize bytes, tag
// the message's index), of which the first Parked are then parked.
func Fill(s *store.Store, b Backlog) error {
	b, err := b.withDefaults()
	if err != nil {
		return err
	}
	params := json.RawMessage(`"` + strings.Repeat("p", b.ParamsSize-2) + `"`)
	at := time.Now().Round(0).UTC()
	type job struct {
		peer, n int
		park    bool
	}
	var jobs []job // in order: the parked front, then the rest, per peer
	for p := range b.Peers {
		n := b.Messages / b.Peers
		if p < b.Messages%b.Peers {
			n++
		}
		parked := min(n, b.Parked)
		if parked > 0 {
			jobs = append(jobs, job{p, parked, true})
		}
		if n > parked {
			jobs = append(jobs, job{p, n - parked, false})
		}
	}
	written := 0
	for len(jobs) > 0 {
		room := b.TxSize
		err := s.Update(func(tx *store.Tx) error {
			room = b.TxSize // Update may run this again
			w := written
			for i := 0; i < len(jobs) && room > 0; i++ {
				j := jobs[i]
				id := PeerID(j.peer)
				k := min(j.n, room)
				for m := range k {
					tag := fmt.Appendf(nil, "%d", w+m)
					if _, err := tx.AppendOut(id, store.OutRecord{Method: "deliver", Params: params, Tag: tag, At: at}); err != nil {
						return err
					}
				}
				if j.park && k == j.n {
					if _, err := tx.ParkOut(id); err != nil {
						return err
					}
				}
				room -= k
				w += k
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Advance past what the committed transaction wrote.
		done := b.TxSize - room
		written += done
		for done > 0 {
			k := min(jobs[0].n, done)
			jobs[0].n -= k
			done -= k
			if jobs[0].n == 0 {
				jobs = jobs[1:]
			}
		}
	}
	return nil
}
