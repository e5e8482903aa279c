package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// goNodesPair is two node.Nodes in this process: B's handler queues each
// request, and one goroutine sends whatever is queued back to A in one
// SendBatch (one group commit).
type goNodesPair struct {
	ctx    context.Context
	cancel context.CancelFunc
	a, b   *node.Node
	hint   string
	hinted atomic.Bool
	onEcho atomic.Value // func(int)
	queue  chan []byte
	wg     sync.WaitGroup
}

var goNodesSeq atomic.Int64

func newGoNodesPair(ctx context.Context, e *env, path string) (*goNodesPair, error) {
	p := &goNodesPair{queue: make(chan []byte, 1<<14)}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.onEcho.Store(func(int) {})
	dir := filepath.Join(e.tmp, fmt.Sprintf("gonodes-%s-%d", path, goNodesSeq.Add(1)))
	var relays []string
	if path == "relay" {
		relays = []string{e.rl.Addrs()[0]}
	}
	var err error
	p.b, err = quietNode(ctx, filepath.Join(dir, "b"), node.Handler{OnMessage: func(m node.Message) error {
		if m.Method == "req" {
			select {
			case p.queue <- m.Params:
			case <-p.ctx.Done():
			}
		}
		return nil
	}}, 0, relays...)
	if err != nil {
		p.cancel()
		return nil, err
	}
	p.a, err = quietNode(ctx, filepath.Join(dir, "a"), node.Handler{OnMessage: func(m node.Message) error {
		if k, ok := parseEcho(m.Params); ok && m.Method == "echo" {
			p.onEcho.Load().(func(int))(k)
		}
		return nil
	}}, 0)
	if err != nil {
		p.b.Stop(ctx)
		p.cancel()
		return nil, err
	}
	p.hint = p.b.ListenAddrs()[0]
	if path == "relay" {
		if !waitUntil(20*time.Second, 10*time.Millisecond, func() bool {
			return slices.ContainsFunc(p.b.Transport().Relays(), func(r transport.RelayStatus) bool { return r.Reserved })
		}) {
			p.close()
			return nil, errors.New("no reservation on the relay within 20 s")
		}
		p.hint = e.rl.Addrs()[0] + "/p2p-circuit/p2p/" + p.b.PeerID().String()
	}
	p.wg.Add(1)
	go p.echoLoop()
	return p, nil
}

func (p *goNodesPair) echoLoop() {
	defer p.wg.Done()
	aid := p.a.PeerID()
	for {
		var batch []node.Outgoing
		select {
		case m := <-p.queue:
			batch = append(batch, node.Outgoing{To: aid, Method: "echo", Params: m})
		case <-p.ctx.Done():
			return
		}
	more:
		for len(batch) < 1024 {
			select {
			case m := <-p.queue:
				batch = append(batch, node.Outgoing{To: aid, Method: "echo", Params: m})
			default:
				break more
			}
		}
		p.b.SendBatch(p.ctx, batch) // a refused echo shows as a timeout in the driver
	}
}

func (p *goNodesPair) setEcho(f func(int)) { p.onEcho.Store(f) }

func (p *goNodesPair) request(k int) error {
	var hints []string
	if !p.hinted.Swap(true) {
		hints = []string{p.hint} // once, as an application would
	}
	_, err := p.a.Send(p.ctx, p.b.PeerID(), "req", echoParams(k), hints...)
	return err
}

func (p *goNodesPair) close() {
	p.cancel()
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.a.Stop(ctx)
	p.b.Stop(ctx)
}
