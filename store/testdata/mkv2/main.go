// Command mkv2 writes store/testdata/schema2.db.gz, a schema-2 data directory
// file for TestUpgradeFromSchema2. It was run with the store package of
// commit 0f9b75e (schema 2), from an export of that commit:
//
//	mkdir -p /tmp/v2 && git archive 0f9b75e | tar -x -C /tmp/v2
//	mkdir -p /tmp/v2/store/testdata && cp -r store/testdata/mkv2 /tmp/v2/store/testdata/
//	cd /tmp/v2 && go run ./store/testdata/mkv2 /path/to/store/testdata/schema2.db.gz
package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ocapnet/ocapnet/store"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(out string) error {
	dir, err := os.MkdirTemp("", "mkv2")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	appendN := func(tx *store.Tx, id string, n int, parked bool) error {
		for range n {
			rec, _, _ := tx.Peer(id)
			seq := rec.NextSeq + 1
			r := store.OutRecord{Method: "deliver", Params: json.RawMessage(fmt.Sprintf(`["%s",%d]`, id, seq)),
				Tag: json.RawMessage(fmt.Sprintf(`"%s-%d"`, id, seq)), Parked: parked, At: at}
			if _, err := tx.AppendOut(id, r); err != nil {
				return err
			}
		}
		return nil
	}
	steps := []func(tx *store.Tx) error{
		func(tx *store.Tx) error {
			if err := tx.SetIdentity(store.Identity{KeySeed: "0102030405060708091011121314151617181920212223242526272829303132", PeerID: "12D3KooWv2", IncarnationID: "inc-v2"}); err != nil {
				return err
			}
			if err := tx.SetLastActive(at); err != nil {
				return err
			}
			return tx.SetBootstrapRelays([]string{"/ip4/127.0.0.1/tcp/4001"}, at, 20)
		},
		// peerA: 10 sent, 3 acknowledged, nothing parked.
		func(tx *store.Tx) error { return appendN(tx, "peerA", 10, false) },
		func(tx *store.Tx) error { _, err := tx.Ack("peerA", 3); return err },
		// peerB: 5 sent and parked in a give-up, 3 more sent, 2 acknowledged.
		func(tx *store.Tx) error { return appendN(tx, "peerB", 5, false) },
		func(tx *store.Tx) error { _, err := tx.ParkOut("peerB"); return err },
		func(tx *store.Tx) error { return appendN(tx, "peerB", 3, false) },
		func(tx *store.Tx) error { _, err := tx.Ack("peerB", 2); return err },
		// peerC: renumbered after a peer restart (3 parked), 1 sent after.
		func(tx *store.Tx) error { return appendN(tx, "peerC", 3, true) },
		func(tx *store.Tx) error { return appendN(tx, "peerC", 1, false) },
		// peerD: 4 sent, parked and discarded: empty log, Acked 4.
		func(tx *store.Tx) error { return appendN(tx, "peerD", 4, false) },
		func(tx *store.Tx) error { _, err := tx.ParkOut("peerD"); return err },
		func(tx *store.Tx) error { _, err := tx.DiscardParked("peerD"); return err },
		// peerE: hints only.
		func(tx *store.Tx) error {
			return tx.PutPeer("peerE", store.PeerRecord{Hints: []string{"/ip4/10.0.0.1/tcp/1"}})
		},
		// peerF: a parked message after an unparked one (schema 2 allowed it).
		func(tx *store.Tx) error { return appendN(tx, "peerF", 1, false) },
		func(tx *store.Tx) error { return appendN(tx, "peerF", 1, true) },
	}
	for _, f := range steps {
		if err := s.Update(f); err != nil {
			return err
		}
	}
	if _, err := s.AppendEvent([]byte(`{"kind":"v2"}`)); err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, store.FileName))
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
