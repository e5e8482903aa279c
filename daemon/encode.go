package daemon

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The hot paths of a busy daemon, by profile: peer IDs to and from base58,
// and the JSON of the events sent for every message. This file keeps them
// cheap: small caches for peer IDs, and the per-message events ("sent",
// "acked", "message") written without reflection.

// peerCacheMax bounds each peer ID cache; a full cache starts over.
const peerCacheMax = 4096

type peerCache struct {
	mu  sync.Mutex
	str map[peer.ID]string
	ids map[string]peer.ID
}

var peers = peerCache{str: map[peer.ID]string{}, ids: map[string]peer.ID{}}

// peerString returns id.String(), cached.
func peerString(id peer.ID) string {
	peers.mu.Lock()
	defer peers.mu.Unlock()
	if s, ok := peers.str[id]; ok {
		return s
	}
	s := id.String()
	if len(peers.str) >= peerCacheMax {
		clear(peers.str)
	}
	peers.str[id] = s
	return s
}

// decodePeer returns peer.Decode(s), caching successes.
func decodePeer(s string) (peer.ID, error) {
	peers.mu.Lock()
	id, ok := peers.ids[s]
	peers.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", err
	}
	peers.mu.Lock()
	if len(peers.ids) >= peerCacheMax {
		clear(peers.ids)
	}
	peers.ids[s] = id
	peers.mu.Unlock()
	return id, nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRaw appends a JSON value compacted (a value that came from a peer
// or a request may hold white space and newlines: a line must not).
func appendRaw(b []byte, v json.RawMessage) []byte {
	buf := bytes.NewBuffer(b)
	if json.Compact(buf, v) != nil {
		return append(b, "null"...) // not reached: values are checked on their way in
	}
	return buf.Bytes()
}

// seqEvent is {"event":E,"id":ID,"to":PEER,"seq":N} ("sent", "acked").
func seqEvent(event string, id json.RawMessage, to peer.ID, seq uint64) []byte {
	b := make([]byte, 0, 96+len(id))
	b = append(b, `{"event":"`...)
	b = append(b, event...)
	b = append(b, '"')
	if len(id) > 0 {
		b = append(b, `,"id":`...)
		b = appendRaw(b, id)
	}
	b = append(b, `,"to":"`...)
	b = append(b, peerString(to)...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

// messageLine is the "message" event.
func messageLine(from peer.ID, seq uint64, method string, params json.RawMessage, redelivery bool) []byte {
	b := make([]byte, 0, 128+len(method)+len(params))
	b = append(b, `{"event":"message","from":"`...)
	b = append(b, peerString(from)...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, method)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = appendRaw(b, params)
	}
	b = append(b, `,"redelivery":`...)
	b = strconv.AppendBool(b, redelivery)
	return append(b, '}')
}
