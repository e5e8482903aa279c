package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/wire"
)

// Send writes msg to peer p as one frame and returns once it is written:
// on an open channel at once (blocking while the peer reads slowly:
// backpressure), otherwise after a connection attempt opened one, for as
// long as ctx allows. It never queues: an error means the message was not
// written (ctx's error, ErrStopped, ErrIntentionallyClosed, ErrClosedByPeer,
// ErrRetriesExhausted, ErrMessageTooLarge, ErrInvalidPeer) or that the write
// itself failed, in which case the peer may or may not have received it.
// Written is not delivered: a layer that must know uses acknowledgements,
// as package node does. hints are added to the peer's location hints first.
func (t *Transport) Send(ctx context.Context, id peer.ID, msg []byte, hints ...string) error {
	if len(msg) > t.opts.MaxMessageSize {
		return fmt.Errorf("send to %s: %w: %d bytes, limit %d", id, ErrMessageTooLarge, len(msg), t.opts.MaxMessageSize)
	}
	if err := t.RegisterHints(id, hints...); err != nil {
		return err
	}
	for {
		_, err := t.TrySendOn(ctx, id, msg, 0)
		if !errors.Is(err, ErrNotConnected) {
			return err
		}
		if err := t.waitForChannel(ctx, id); err != nil {
			return err
		}
	}
}

// waitForChannel asks for a connection to p and waits until p's link
// changes (a channel is registered or the link ends), ctx ends or the
// transport stops.
func (t *Transport) waitForChannel(ctx context.Context, id peer.ID) error {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return ErrStopped
	}
	p := t.peerLocked(id)
	if err := t.refuseLocked(p); err != nil {
		t.mu.Unlock()
		return err
	}
	if p.gaveUp {
		err := fmt.Errorf("send to %s: %w: %s", id, ErrRetriesExhausted, p.lastErr)
		t.mu.Unlock()
		return err
	}
	if p.ch != nil {
		t.mu.Unlock()
		return nil // a channel came up meanwhile: try again
	}
	changed := p.linkChanged
	p.waiters++
	t.ensureConnectorLocked(p)
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		p.waiters--
		t.mu.Unlock()
	}()
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send to %s: no channel: %w", id, ctx.Err())
	case <-t.ctx.Done():
		return ErrStopped
	}
}

// TrySend writes msg to p only if a channel is open; it never waits for one
// and returns ErrNotConnected otherwise (starting a connection attempt only
// if p is pinned).
func (t *Transport) TrySend(ctx context.Context, id peer.ID, msg []byte) error {
	_, err := t.TrySendOn(ctx, id, msg, 0)
	return err
}

// TrySendOn is TrySend restricted to the peer's channel of generation gen
// (0: whichever is open). It returns the generation of the channel it wrote
// on, or, with ErrChannelChanged and without writing, the generation of the
// channel that replaced gen's (0 if none is open, with ErrNotConnected).
// A layer above that numbers its frames writes with the generation it
// learnt from Handler.OnChannel, so that it never writes on a new channel
// before it has decided what to resend there.
func (t *Transport) TrySendOn(ctx context.Context, id peer.ID, msg []byte, gen uint64) (uint64, error) {
	return t.TrySendFramesOn(ctx, id, [][]byte{msg}, gen)
}

// TrySendFramesOn is TrySendOn for a run of frames: they are written in
// order, coalesced into as few writes as the stream allows (one write of up
// to maxWriteChunk bytes carries many small frames), so a burst costs a few
// syscalls and security records instead of one per frame, while a lone frame
// is written at once. On an error the peer may have received any prefix of
// the run.
func (t *Transport) TrySendFramesOn(ctx context.Context, id peer.ID, frames [][]byte, gen uint64) (uint64, error) {
	for _, msg := range frames {
		if len(msg) > t.opts.MaxMessageSize {
			return 0, fmt.Errorf("send to %s: %w: %d bytes, limit %d", id, ErrMessageTooLarge, len(msg), t.opts.MaxMessageSize)
		}
	}
	p := t.peer(id)
	if p == nil {
		return 0, ErrStopped
	}
	select {
	case p.sendSem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.ctx.Done():
		return 0, ErrStopped
	}
	t.mu.Lock()
	if err := t.refuseLocked(p); err != nil {
		t.mu.Unlock()
		<-p.sendSem
		return 0, err
	}
	ch := p.ch
	if ch == nil {
		if p.pinned {
			t.ensureConnectorLocked(p)
		}
		t.mu.Unlock()
		<-p.sendSem
		return 0, fmt.Errorf("send to %s: %w", id, ErrNotConnected)
	}
	t.mu.Unlock()
	if gen != 0 && ch.gen != gen {
		<-p.sendSem
		return ch.gen, fmt.Errorf("send to %s: %w", id, ErrChannelChanged)
	}
	err := t.writeFrames(ch, frames)
	<-p.sendSem
	if err != nil {
		t.channelFailed(ch, err)
		return ch.gen, err
	}
	return ch.gen, nil
}

// maxWriteChunk is the most bytes of frames gathered into one write.
const maxWriteChunk = 256 << 10

// smallWrite is the size of the small write buffers, for runs that fit.
const smallWrite = 16 << 10

// smallBufs and bigBufs are the write buffers (smallWrite and maxWriteChunk
// bytes) shared by all channels: a channel holds one only while it writes,
// so thousands of idle channels hold none, a busy one does not regrow its
// buffer per run, and a lone small frame does not touch a big buffer.
var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, 0, smallWrite); return &b }}
	bigBufs   = sync.Pool{New: func() any { b := make([]byte, 0, maxWriteChunk); return &b }}
)

// writeFrames writes frames on ch within WriteTimeout, gathering them into
// writes of up to maxWriteChunk bytes: the run handed over is what is ready,
// so it is flushed as soon as it is gathered (a lone frame is one write at
// once; a run of small frames is one write, one security record per 16 KiB
// and one system call, instead of one each per frame). A frame larger than
// maxWriteChunk is written on its own, in one write. The caller holds the
// peer's send semaphore (which also guards ch.writeDeadline): writes of
// concurrent callers never interleave, and a slow reader blocks the writer
// (backpressure). The stream's write deadline is refreshed only when less
// than half of WriteTimeout is left, so a write always has between
// WriteTimeout/2 and WriteTimeout, and the hot path does not reset a timer
// per write.
func (t *Transport) writeFrames(ch *channel, frames [][]byte) error {
	now := time.Now()
	if ch.writeDeadline.Sub(now) < t.opts.WriteTimeout/2 {
		ch.writeDeadline = now.Add(t.opts.WriteTimeout)
		if err := ch.s.SetWriteDeadline(ch.writeDeadline); err != nil {
			return fmt.Errorf("write to %s: %w", ch.p.id, err)
		}
	}
	total := 0
	for _, f := range frames {
		total += len(f) + binary.MaxVarintLen32
	}
	pool := &bigBufs
	if total <= smallWrite {
		pool = &smallBufs
	}
	pooled := pool.Get().(*[]byte)
	defer pool.Put(pooled)
	buf := (*pooled)[:0]
	limit := cap(buf)
	bytes, writes := 0, 0
	flush := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		writes++
		if _, err := ch.w.Write(b); err != nil {
			return fmt.Errorf("write to %s: %w", ch.p.id, err)
		}
		return nil
	}
	for _, f := range frames {
		bytes += len(f)
		need := len(f) + binary.MaxVarintLen32
		if len(buf) > 0 && len(buf)+need > limit {
			if err := flush(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if need > maxWriteChunk {
			if err := flush(wire.AppendFrame(make([]byte, 0, need), f)); err != nil {
				return err
			}
			continue
		}
		buf = wire.AppendFrame(buf, f)
	}
	if err := flush(buf); err != nil {
		return err
	}
	ch.lastUse.Store(time.Now().UnixNano())
	t.metrics.msgsOut.Add(float64(len(frames)))
	t.metrics.bytesOut.Add(float64(bytes))
	t.metrics.writes.Add(float64(writes))
	return nil
}
