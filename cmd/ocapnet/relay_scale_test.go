//go:build scale

package main

import "testing"

// TestRelayScale is the relay at scale (issue 12 item 8): 5,000 client
// hosts reserving on one relay process, 8 per loopback address, then 1,000
// concurrent circuits. Not in the default run:
//
//	go test -tags scale -run TestRelayScale -v -timeout 30m ./cmd/ocapnet/
func TestRelayScale(t *testing.T) {
	relayLoad(t, loadConfig{reservations: 5000, perIP: 8, circuits: 1000, frames: 3, workers: 64, dialers: 64})
}
