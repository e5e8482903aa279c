package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// params100 is a 100-byte JSON params value.
var params100 = json.RawMessage(`["` + strings.Repeat("x", 96) + `"]`)

// appendN appends n messages with 100-byte params to the peer's log and
// returns the last sequence number.
func appendN(tx *Tx, peer string, n int) (top uint64, err error) {
	for range n {
		if top, err = tx.AppendOut(peer, OutRecord{Method: "deliver", Params: params100}); err != nil {
			return 0, err
		}
	}
	return top, nil
}

// BenchmarkAck: one durable Update that acknowledges n messages (100-byte
// params) of one peer, including its commit and fsync. The log is refilled
// with n messages before each (untimed).
//
//	go test -run '^$' -bench Ack -count 6 ./store/
func BenchmarkAck(b *testing.B) {
	for _, n := range []int{1, 64, 4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := open(b, b.TempDir())
			var top uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := s.Update(func(tx *Tx) (err error) { top, err = appendN(tx, "peer", n); return }); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Update(func(tx *Tx) error { _, err := tx.Ack("peer", top); return err }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAckCall: only the tx.Ack call that acknowledges n committed
// messages, without its commit (the CPU the call itself spends).
func BenchmarkAckCall(b *testing.B) {
	for _, n := range []int{1, 64, 4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := open(b, b.TempDir())
			s.db.NoSync = true // the commit is not measured; spare the disk
			b.StopTimer()
			var top uint64
			for i := 0; i < b.N; i++ {
				if err := s.Update(func(tx *Tx) (err error) { top, err = appendN(tx, "peer", n); return }); err != nil {
					b.Fatal(err)
				}
				if err := s.Update(func(tx *Tx) error {
					b.StartTimer()
					_, err := tx.Ack("peer", top)
					b.StopTimer()
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendAck: the node's steady state at a high rate: 16 senders
// each appending one message per Update, every 64th Update also
// acknowledging everything appended so far. For profiles:
//
//	go test -run '^$' -bench AppendAck -cpuprofile cpu.prof ./store/
func BenchmarkAppendAck(b *testing.B) {
	s := open(b, b.TempDir())
	runSenders(b, 16, func(i int) error {
		return s.Update(func(tx *Tx) error {
			seq, err := tx.AppendOut("peer", OutRecord{Method: "deliver", Params: params100})
			if err != nil || i%64 != 63 {
				return err
			}
			_, err = tx.Ack("peer", seq)
			return err
		})
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
