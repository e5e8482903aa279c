package store

import (
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var benchParams = json.RawMessage(`["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\",1,2,3,4,5,6,7,8,9,10]]","slots":[]},"result":"rp+4"}]`)

// BenchmarkGroupCommit: durable appends per second through Update with
// concurrent senders (each append is its own Update call, fsync'd before it
// returns; the committer batches concurrent ones). Compare with
// BenchmarkRawBoltBatch64 in the same run:
//
//	go test -run '^$' -bench 'GroupCommit|RawBolt' -benchtime 20000x ./store/
func BenchmarkGroupCommit(b *testing.B) {
	for _, senders := range []int{1, 16, 64} {
		b.Run(map[int]string{1: "senders=1", 16: "senders=16", 64: "senders=64"}[senders], func(b *testing.B) {
			s := open(b, b.TempDir())
			runSenders(b, senders, func(int) error {
				return s.Update(func(tx *Tx) error {
					_, err := tx.AppendOut("peer", OutRecord{Method: "deliver", Params: benchParams})
					return err
				})
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// runSenders calls do(i) for i in [0, b.N) from senders goroutines, with the
// timer reset after setup.
func runSenders(b *testing.B, senders int, do func(i int) error) {
	work := make(chan int, b.N)
	for i := range b.N {
		work <- i
	}
	close(work)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := do(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRawBoltBatch64: the store's batch limit, raw bbolt appending
// 200-byte records with 8-byte big-endian keys, 64 per fsync'd transaction.
func BenchmarkRawBoltBatch64(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	value := make([]byte, 200)
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("log"))
			if err != nil {
				return err
			}
			for j := i; j < min(i+64, b.N); j++ {
				if err := bk.Put(binary.BigEndian.AppendUint64(nil, uint64(j)), value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
