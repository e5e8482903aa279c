package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ocapnet/ocapnet/store"
)

// startupCase: time and heap to start a node whose store holds 1,000,000
// pending messages across 1,000 peers (10,000 across 100 with --quick).
// The store file is made through store's public API in big transactions
// (one per peer).
func startupCase(ctx context.Context, e *env) error {
	peers, per := e.quick(100, 1000), e.quick(100, 1000)
	dir := filepath.Join(e.tmp, "startup")
	t0 := time.Now()
	if err := pendingFixture(dir, peers, per); err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	made := time.Since(t0)
	runs := e.quick(1, 3)
	var secs, heap, rs []float64
	for range runs {
		rep, err := runChild(ctx, e, "startup", childRequest{Dir: dir}, 10*time.Minute)
		if err != nil {
			return err
		}
		secs, heap, rs = append(secs, rep.StartSeconds*1000), append(heap, (rep.Heap-rep.Heap0)/(1<<20)), append(rs, (rep.RSS-rep.RSS0)/(1<<20))
	}
	name := "startup/pending-1M"
	if e.o.Quick {
		name = "startup/pending-10k"
	}
	note := fmt.Sprintf("node.Start in a child process on a data directory holding %d pending messages across %d peers (made in %.1f s through store's API, one transaction per peer); %d runs on the same directory", peers*per, peers, made.Seconds(), runs)
	e.add(figure(name+"/time", "ms", "lower", secs, note))
	e.add(figure(name+"/heap", "MiB", "lower", heap, note+"; live heap after Start, over the bare process's"))
	if rs[0] >= 0 {
		e.add(figure(name+"/rss", "MiB", "lower", rs, note+"; RSS after Start, over the bare process's"))
	}
	return nil
}

// pendingFixture writes peers × per outbound messages into a new store in
// dir (one transaction per peer).
func pendingFixture(dir string, peers, per int) error {
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	at := time.Now().UTC()
	for range peers {
		id := seed().PeerID().String()
		if err := st.Update(func(tx *store.Tx) error {
			for range per {
				if _, err := tx.AppendOut(id, store.OutRecord{Method: "deliver", Params: benchParams, At: at}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}
