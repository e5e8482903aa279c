package storetest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(tb testing.TB, dir string) *store.Store {
	tb.Helper()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Fill writes exactly the backlog asked for, across transaction boundaries
// that split peers and parked fronts.
func TestFill(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	b := Backlog{Peers: 7, Messages: 100, ParamsSize: 10, Parked: 5, TxSize: 13}
	if err := Fill(s, b); err != nil {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	err := s.View(func(tx *store.Tx) error {
		for p := range b.Peers {
			id := PeerID(p)
			rec, ok, err := tx.Peer(id)
			if err != nil || !ok {
				return fmt.Errorf("peer %d: %v %v", p, ok, err)
			}
			want := uint64(100/7 + map[bool]int{true: 1}[p < 100%7])
			if rec.NextSeq != want || rec.OutLen != want || rec.ParkedTo != 5 {
				return fmt.Errorf("peer %d: %+v, want %d messages, 5 parked", p, rec, want)
			}
			out, err := tx.Out(id, 0, 0)
			if err != nil {
				return err
			}
			for _, r := range out {
				tags[string(r.Tag)] = true
				if len(r.Params) != 10 || r.Parked != (r.Seq <= 5) {
					return fmt.Errorf("peer %d message %+v", p, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 100 {
		t.Fatalf("%d distinct tags, want 100", len(tags))
	}
	if err := Fill(s, Backlog{}); err == nil {
		t.Fatal("Fill accepted zero peers")
	}
}

var (
	fixtureMessages = flag.Int("storetest.messages", 1_000_000, "BenchmarkStartupFixture: pending messages")
	fixturePeers    = flag.Int("storetest.peers", 1000, "BenchmarkStartupFixture: peers")
	fixtureWindow   = flag.Int("storetest.window", 64, "BenchmarkStartupFixture: messages read per peer in the windowed start")
)

// BenchmarkStartupFixture builds the fixture once and reports what it and a
// start on it cost: fill-s (creating it), MB (file size), open-s (Open of
// the closed file), peers-s (every peer record through ForEachPeer),
// window-s (plus the first -storetest.window sendable messages of every
// peer) and all-s (every pending message of every peer, as a start that
// loads the whole backlog does).
//
//	go test -run '^$' -bench StartupFixture -benchtime 1x ./store/storetest/
func BenchmarkStartupFixture(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		s := openStore(b, dir)
		t0 := time.Now()
		if err := Fill(s, Backlog{Peers: *fixturePeers, Messages: *fixtureMessages}); err != nil {
			b.Fatal(err)
		}
		fill := time.Since(t0)
		s.Close()
		fi, err := os.Stat(filepath.Join(dir, store.FileName))
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		s = openStore(b, dir)
		open := time.Since(t0)
		read := func(window int) (time.Duration, int) {
			t0 := time.Now()
			n := 0
			err := s.View(func(tx *store.Tx) error {
				return tx.ForEachPeer(func(id string, r store.PeerRecord) error {
					if window < 0 {
						return nil
					}
					out, err := tx.Out(id, r.SendFrom(), window)
					n += len(out)
					return err
				})
			})
			if err != nil {
				b.Fatal(err)
			}
			return time.Since(t0), n
		}
		peers, _ := read(-1)
		window, _ := read(*fixtureWindow)
		all, n := read(0)
		s.Close()
		if n != *fixtureMessages {
			b.Fatalf("read %d messages back, want %d", n, *fixtureMessages)
		}
		b.ReportMetric(fill.Seconds(), "fill-s")
		b.ReportMetric(float64(fi.Size())/1e6, "MB")
		b.ReportMetric(open.Seconds(), "open-s")
		b.ReportMetric(peers.Seconds(), "peers-s")
		b.ReportMetric(window.Seconds(), "window-s")
		b.ReportMetric(all.Seconds(), "all-s")
	}
}
