package daemon

import (
	"io"
	"sync"
)

// outWriter writes JSON lines to the stdio output. Lines that are ready
// together go out in one write: whoever waits for its lines while no write
// is running writes everything queued (so a lone line goes out at once, and
// under load the lines queued during one write share the next). Safe for
// concurrent use; lines keep their enqueue order.
type outWriter struct {
	w        io.Writer
	gate     chan struct{} // closed when the ready line is out
	gateOnce sync.Once

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte // queued lines
	queued  uint64 // lines ever queued
	written uint64 // lines ever written (or failed)
	writing bool
	err     error // the first write error; every later wait returns it
}

func newOutWriter(w io.Writer) *outWriter {
	o := &outWriter{w: w, gate: make(chan struct{})}
	o.cond = sync.NewCond(&o.mu)
	return o
}

// ticket identifies a point in the output: wait(t) returns once every line
// queued before it was written.
type ticket uint64

// enqueue queues lines (each without its newline) and returns their ticket.
// It never blocks on the output.
func (o *outWriter) enqueue(lines ...[]byte) ticket {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.enqueueLocked(lines...)
}

func (o *outWriter) enqueueLocked(lines ...[]byte) ticket {
	for _, l := range lines {
		o.buf = append(o.buf, l...)
		o.buf = append(o.buf, '\n')
	}
	o.queued += uint64(len(lines))
	return ticket(o.queued)
}

// wait returns once the lines up to t are written, writing them itself when
// no other write is running.
func (o *outWriter) wait(t ticket) error {
	<-o.gate
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.written < uint64(t) {
		if o.writing {
			o.cond.Wait()
			continue
		}
		o.writing = true
		buf, upTo := o.buf, o.queued
		o.buf = nil
		var err error
		if o.err == nil && len(buf) > 0 {
			o.mu.Unlock()
			_, err = o.w.Write(buf)
			o.mu.Lock()
		}
		if err != nil && o.err == nil {
			o.err = err
		}
		o.written = upTo
		o.writing = false
		o.cond.Broadcast()
	}
	return o.err
}

// write queues lines and waits for them.
func (o *outWriter) write(lines ...[]byte) error { return o.wait(o.enqueue(lines...)) }

// writeFirst writes line before anything queued (the ready line) and opens
// the gate.
func (o *outWriter) writeFirst(line []byte) error {
	o.mu.Lock()
	_, err := o.w.Write(append(line[:len(line):len(line)], '\n'))
	o.mu.Unlock()
	o.open()
	return err
}

// open lets the queued lines out.
func (o *outWriter) open() { o.gateOnce.Do(func() { close(o.gate) }) }
