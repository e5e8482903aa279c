package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/ocapnet/ocapnet/node"
)

// e2ePair is two nodes over loopback TCP: A sends, B's handler counts (and
// reports the time it ran), A counts B's acknowledgements.
type e2ePair struct {
	a, b      *node.Node
	hint      string
	hinted    atomic.Bool
	acked     atomic.Int64
	ackedCh   chan struct{}
	delivered chan time.Time
	target    atomic.Int64
}

func newE2EPair(ctx context.Context, dir string) (*e2ePair, error) {
	p := &e2ePair{ackedCh: make(chan struct{}, 1), delivered: make(chan time.Time, 1)}
	var err error
	p.b, err = quietNode(ctx, filepath.Join(dir, "b"), node.Handler{OnMessage: func(node.Message) error {
		select {
		case p.delivered <- time.Now():
		default:
		}
		return nil
	}}, 0)
	if err != nil {
		return nil, err
	}
	bid := p.b.PeerID()
	p.a, err = quietNode(ctx, filepath.Join(dir, "a"), node.Handler{OnEvent: func(ev node.Event) {
		if a, ok := ev.(node.Acknowledged); ok && a.Peer == bid {
			if p.acked.Add(int64(a.To-a.From+1)) >= p.target.Load() {
				select {
				case p.ackedCh <- struct{}{}:
				default:
				}
			}
		}
	}}, 0)
	if err != nil {
		p.b.Stop(ctx)
		return nil, err
	}
	p.hint = p.b.ListenAddrs()[0]
	return p, nil
}

// hints gives the hint with the first Send only, as an application would
// (a hint on every Send is parsed and stored every time).
func (p *e2ePair) hints() []string {
	if p.hinted.Swap(true) {
		return nil
	}
	return []string{p.hint}
}

func (p *e2ePair) close(ctx context.Context) {
	p.a.Stop(ctx)
	p.b.Stop(ctx)
}

// throughput: n Sends from the given number of senders; messages per
// second from the first Send until A has counted n acknowledgements.
func (p *e2ePair) throughput(ctx context.Context, n, senders int) (float64, error) {
	start := p.acked.Load()
	p.target.Store(start + int64(n))
	t0 := time.Now()
	if err := fanOut(senders, n, func(int) error {
		_, err := p.a.Send(ctx, p.b.PeerID(), "deliver", benchParams, p.hints()...)
		return err
	}); err != nil {
		return 0, err
	}
	for p.acked.Load() < start+int64(n) {
		select {
		case <-p.ackedCh:
		case <-time.After(2 * time.Minute):
			return 0, fmt.Errorf("%w: %d of %d acknowledged", ErrTimeout, p.acked.Load()-start, n)
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// latency: n Sends one at a time; for each, the time from the Send call to
// B's handler, and to Send's return (durable on A).
func (p *e2ePair) latency(ctx context.Context, n int) (delivered, durable []time.Duration, err error) {
	for range n {
		select { // a late report of an earlier message
		case <-p.delivered:
		default:
		}
		t0 := time.Now()
		if _, err := p.a.Send(ctx, p.b.PeerID(), "deliver", benchParams, p.hints()...); err != nil {
			return nil, nil, err
		}
		durable = append(durable, time.Since(t0))
		select {
		case at := <-p.delivered:
			delivered = append(delivered, at.Sub(t0))
		case <-time.After(30 * time.Second):
			return nil, nil, fmt.Errorf("%w: not delivered within 30 s", ErrTimeout)
		}
	}
	return delivered, durable, nil
}

// endToEndCase: durable delivery between two nodes (Send on A, handler on
// B, acknowledgement back to A).
func endToEndCase(ctx context.Context, e *env) error {
	p, err := newE2EPair(ctx, filepath.Join(e.tmp, "e2e"))
	if err != nil {
		return err
	}
	defer p.close(ctx)
	if _, err := p.throughput(ctx, 10, 1); err != nil { // connect
		return err
	}
	n := e.quick(2000, 20000)
	var tput, batch, commitMs []float64
	for range e.runs {
		s0 := p.a.Store().Stats()
		v, err := p.throughput(ctx, n, 64)
		if err != nil {
			e.add(failed("durable/end-to-end/senders-64/throughput", err))
			break
		}
		tput = append(tput, v)
		s1 := p.a.Store().Stats()
		if c := s1.Commits - s0.Commits; c > 0 {
			batch = append(batch, float64(s1.Updates-s0.Updates)/float64(c))
			commitMs = append(commitMs, ms(s1.Busy-s0.Busy)/float64(c))
		}
	}
	if len(batch) > 0 {
		e.add(figure("durable/end-to-end/senders-64/sender-batch-size", "updates/commit", "higher", batch,
			"A's store during the throughput runs: Sends and acknowledgement records per group commit (store.Stats)"))
		e.add(figure("durable/end-to-end/senders-64/sender-commit-time", "ms", "lower", commitMs,
			"A's store during the throughput runs: mean time of one group commit (encode, write, two fdatasyncs)"))
	}
	if len(tput) > 0 {
		e.add(figure("durable/end-to-end/senders-64/throughput", "msgs/s", "higher", tput,
			fmt.Sprintf("two nodes over loopback TCP, 64 closed-loop senders, %d Sends a run; counts node Acknowledged events on the sender (delivered to B's handler, recorded, acknowledged)", n)).
			withGoal("≥ 50,000 msgs/s"))
	}
	ln := e.quick(50, 1000)
	var del, dur [][]time.Duration
	var floor []float64
	for i := range e.runs {
		d, u, err := p.latency(ctx, ln)
		if err != nil {
			return err
		}
		del, dur = append(del, d), append(dur, u)
		f, err := floorRun(e, i, e.quick(50, 300))
		if err != nil {
			return err
		}
		floor = append(floor, ms(f.sync*2+f.rtt/2))
	}
	rows := latencyRows("durable/end-to-end/senders-1/send-to-delivered", del, nil, "one sender, one message at a time: from the Send call on A to B's handler")
	for i := range rows {
		rows[i].Goal = "p50 ≤ 1 ms"
		if i == 0 {
			b := summarize(floor)
			rows[i].Baseline, rows[i].BaselineMin, rows[i].BaselineMax = &b.med, &b.lo, &b.hi
			ratio := rows[i].Value / b.med
			rows[i].Ratio = &ratio
			rows[i].Note += "; baseline: two " + syncName + "s (one bbolt commit) + half a plain TCP round trip, measured alternately"
		}
		e.add(rows[i])
	}
	for _, r := range latencyRows("durable/end-to-end/senders-1/send-durable", dur, nil, "the Send call's own time (appended and fsync'd on A)") {
		e.add(r)
	}
	return nil
}

// floor is the cost of the parts of a durable round trip: one fdatasync
// (p50) and one plain TCP loopback round trip (p50).
type floor struct{ sync, rtt time.Duration }

func floorRun(e *env, i, n int) (floor, error) {
	s, err := syncLoop(filepath.Join(e.tmp, fmt.Sprintf("floor-%d", i)), n)
	if err != nil {
		return floor{}, err
	}
	tp, err := newTCPPair()
	if err != nil {
		return floor{}, err
	}
	defer tp.close()
	r, err := tp.rtt(200, n)
	if err != nil {
		return floor{}, err
	}
	return floor{pct(s, 0.5), pct(r, 0.5)}, nil
}
