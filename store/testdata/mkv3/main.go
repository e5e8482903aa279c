// Command mkv3 writes store/testdata/schema3.db.gz, a schema-3 data directory
// file for TestUpgradeFromSchema3: an identity, a relay pool, one peer with
// two outbound messages (one acknowledged) and one event. It was run with
// the store package of commit 24636b4 (schema 3):
//
//	mkdir -p /tmp/v3 && git archive 24636b4 | tar -x -C /tmp/v3
//	mkdir -p /tmp/v3/store/testdata && cp -r store/testdata/mkv3 /tmp/v3/store/testdata/
//	cd /tmp/v3 && go run ./store/testdata/mkv3 /path/to/store/testdata/schema3.db.gz
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
	dir, err := os.MkdirTemp("", "mkv3")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	err = s.Update(func(tx *store.Tx) error {
		if err := tx.SetIdentity(store.Identity{KeySeed: "03", IncarnationID: "inc-v3"}); err != nil {
			return err
		}
		if err := tx.AddKnownRelays([]string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}, at, 0); err != nil {
			return err
		}
		for i := 1; i <= 2; i++ {
			r := store.OutRecord{Method: "deliver", Params: json.RawMessage(fmt.Sprintf(`["peerA",%d]`, i)), At: at}
			if _, err := tx.AppendOut("peerA", r); err != nil {
				return err
			}
		}
		_, err := tx.Ack("peerA", 1)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := s.AppendEvent([]byte(`{"type":"v3"}`)); err != nil {
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
	zw := gzip.NewWriter(f)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
