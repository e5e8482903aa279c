package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/store"
	"github.com/ocapnet/ocapnet/transport"
)

var errBadMeta = errors.New("bbolt meta page not readable")

var benchParams = []byte(`["message","ro-1",{"methargs":{"body":"#[\"hello\",[\"Alice\",1,2,3,4,5,6,7,8,9,10]]","slots":[]},"result":"rp+4"}]`)

func quietNode(ctx context.Context, dir string, h node.Handler, window int, relays ...string) (*node.Node, error) {
	return node.Start(ctx, node.Options{Dir: dir, Window: window, Logger: quietLog(),
		Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: relays, WakeInterval: -1,
			ReconnectBaseDelay: 50 * time.Millisecond, ReconnectMaxDelay: 500 * time.Millisecond}}, h)
}

// fdatasyncCase: the disk's limit: a 4 KiB page rewritten and fdatasync'd
// in a loop.
func fdatasyncCase(_ context.Context, e *env) error {
	n := e.quick(50, 1000)
	var rates []float64
	var lats [][]time.Duration
	for i := range e.runs {
		l, err := syncLoop(filepath.Join(e.tmp, fmt.Sprintf("sync-%d", i)), n)
		if err != nil {
			return err
		}
		var total time.Duration
		for _, d := range l {
			total += d
		}
		rates = append(rates, float64(len(l))/total.Seconds())
		lats = append(lats, l)
	}
	e.add(figure("durable/"+syncName+"/rate", "syncs/s", "higher", rates, "a 4 KiB page rewritten and "+syncName+"'d in a loop: the disk's limit (a bbolt commit needs two)"))
	for _, r := range latencyRows("durable/"+syncName+"/latency", lats, nil, "one 4 KiB write + "+syncName) {
		e.add(r)
	}
	return nil
}

// syncLoop writes and syncs a 4 KiB page n times and returns each time.
func syncLoop(path string, n int) ([]time.Duration, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	page := make([]byte, 4096)
	if _, err := f.WriteAt(page, 0); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, n)
	for i := range n {
		page[0] = byte(i)
		t0 := time.Now()
		if _, err := f.WriteAt(page, 0); err != nil {
			return nil, err
		}
		if err := datasync(f); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// groupCommitCase: node Sends to an unreachable peer (only the durable log
// is measured) from 1, 64 and 256 closed-loop senders, next to raw bbolt
// committing the batch sizes this run's group commit formed.
func groupCommitCase(ctx context.Context, e *env) error {
	for _, senders := range []int{1, 64, 256} {
		n := e.quick(2000, 20000)
		if senders == 1 {
			n = e.quick(30, 300)
		}
		name := fmt.Sprintf("durable/group-commit/senders-%d", senders)
		e.say("%s", name)
		var batches [][]int
		run := 0
		ours := func() (float64, error) {
			run++
			v, b, err := durableSends(ctx, filepath.Join(e.tmp, fmt.Sprintf("gc%d-%d", senders, run)), n, senders)
			batches = append(batches, b)
			return v, err
		}
		raw := func() (float64, error) {
			b := batches[len(batches)-1]
			if len(b) == 0 {
				b = []int{senders / 2}
			}
			return rawBolt(filepath.Join(e.tmp, fmt.Sprintf("raw%d-%d.db", senders, run)), n, b)
		}
		o, b, err := alternate(e.runs, ours, raw)
		if err != nil {
			e.add(failed(name, err))
			continue
		}
		var all []int
		for _, bs := range batches {
			all = append(all, bs...)
		}
		note := fmt.Sprintf("%d closed-loop senders, %d Sends a run; baseline: raw bbolt committing the same appends in the batch sizes this run's group commit formed (observed from the file's meta page after each Send), one peer record per transaction", senders, n)
		if len(all) == 0 {
			note += "; batch sizes not observable here: baseline uses senders/2"
		}
		e.add(compared(name+"/throughput", "sends/s", "higher", o, b[0], note))
		if len(all) > 0 {
			means := make([]float64, len(batches))
			for i, bs := range batches {
				total := 0
				for _, x := range bs {
					total += x
				}
				means[i] = float64(total) / float64(max(1, len(bs)))
			}
			slices.Sort(all)
			q := func(p float64) int { return all[min(len(all)-1, int(p*float64(len(all))))] }
			r := figure(name+"/batch-size", "sends/commit", "higher", means,
				fmt.Sprintf("mean Sends per commit per run; over all %d commits: p10 %d, p50 %d, p90 %d, max %d", len(all), q(0.1), q(0.5), q(0.9), all[len(all)-1]))
			e.add(r)
		}
	}
	return nil
}

// durableSends: node Sends per second to an unreachable peer from the
// given number of concurrent senders, and the number of Sends each commit
// carried, in commit order (nil when not observable).
func durableSends(ctx context.Context, dir string, n, senders int) (float64, []int, error) {
	nd, err := quietNode(ctx, dir, node.Handler{}, 1<<30)
	if err != nil {
		return 0, nil, err
	}
	defer nd.Stop(ctx)
	away := identity.Seed{0x77}.PeerID()
	// The peer's record exists before the timed run.
	if _, err := nd.Send(ctx, away, "deliver", benchParams); err != nil {
		return 0, nil, err
	}
	txr, _ := openTxidReader(filepath.Join(dir, store.FileName))
	if txr != nil {
		defer txr.close()
	}
	counts := make([]map[uint64]int, senders)
	for i := range counts {
		counts[i] = map[uint64]int{}
	}
	t0 := time.Now()
	err = fanOut(senders, n, func(w int) error {
		if _, err := nd.Send(ctx, away, "deliver", benchParams); err != nil {
			return err
		}
		if txr != nil {
			counts[w][txr.txid()]++
		}
		return nil
	})
	el := time.Since(t0)
	if err != nil {
		return 0, nil, err
	}
	if txr == nil {
		return float64(n) / el.Seconds(), nil, nil
	}
	per := map[uint64]int{}
	for _, c := range counts {
		for tx, k := range c {
			per[tx] += k
		}
	}
	txs := make([]uint64, 0, len(per))
	for tx := range per {
		txs = append(txs, tx)
	}
	slices.Sort(txs)
	batches := make([]int, len(txs))
	for i, tx := range txs {
		batches[i] = per[tx]
	}
	return float64(n) / el.Seconds(), batches, nil
}

// rawBolt: bbolt committing n appends of the node's own record encoding
// (JSON of store.OutRecord with the same params) in transactions of the
// given sizes (cycled), each also rewriting one peer record, as the store
// does once per batch. Appends per second.
func rawBolt(path string, n int, sizes []int) (float64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer db.Close()
	value, err := json.Marshal(store.OutRecord{Method: "deliver", Params: benchParams, At: time.Now().UTC()})
	if err != nil {
		return 0, err
	}
	peerRec, err := json.Marshal(store.PeerRecord{NextSeq: 1 << 40, Hints: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc"}})
	if err != nil {
		return 0, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		p, err := tx.CreateBucketIfNotExists([]byte("peers"))
		if err != nil {
			return err
		}
		pb, err := p.CreateBucketIfNotExists([]byte("12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc"))
		if err != nil {
			return err
		}
		_, err = pb.CreateBucketIfNotExists([]byte("out"))
		return err
	}); err != nil {
		return 0, err
	}
	t0 := time.Now()
	seq := uint64(0)
	for i := 0; seq < uint64(n); i++ {
		k := max(1, sizes[i%len(sizes)])
		if err := db.Update(func(tx *bolt.Tx) error {
			pb := tx.Bucket([]byte("peers")).Bucket([]byte("12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc"))
			out := pb.Bucket([]byte("out"))
			for j := 0; j < k && seq < uint64(n); j++ {
				seq++
				if err := out.Put(binary.BigEndian.AppendUint64(nil, seq), value); err != nil {
					return err
				}
			}
			return pb.Put([]byte("record"), peerRec)
		}); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}
