package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
)

// Stdio reading: stdin is read in large chunks, every complete line that is
// available is parsed, and the lines go to one executor as a batch; the
// executor commits each run of consecutive sends with one node.SendBatch
// (one group commit) and writes the answers in input order in one write.
// While it commits, the next lines gather, so batches grow with the load
// and a lone line is not delayed.
const (
	stdinBuffer   = 1 << 20 // bytes read at once
	maxBatchLines = 4096    // lines per batch
	maxQueued     = 16384   // lines read but not yet executed (backpressure)
)

// job is one input line, parsed.
type job struct {
	line int // 1-based
	req  request
	err  error
}

// ServeStdio reads request lines from in until it ends (it returns nil) or
// ctx is done, answering each on the stdio output in input order. A bad line
// gets an error event naming its line, field or byte, nothing of it is
// done, and reading continues. Lines longer than 4 times the message size
// limit are refused whole.
func (d *Daemon) ServeStdio(ctx context.Context, in io.Reader) error {
	q := newJobQueue(maxQueued)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			jobs, ok := q.take()
			if !ok {
				return
			}
			d.runJobs(ctx, jobs)
		}
	}()
	err := d.readJobs(ctx, in, q)
	q.close()
	<-done
	return err
}

func (d *Daemon) readJobs(ctx context.Context, in io.Reader, q *jobQueue) error {
	maxLine := 4 * d.n.Transport().MaxMessageSize()
	br := bufio.NewReaderSize(in, stdinBuffer)
	lineNo := 0
	var batch []job
	for ctx.Err() == nil {
		line, tooLong, err := readLine(br, maxLine)
		if len(line) > 0 || tooLong {
			lineNo++
		}
		switch {
		case tooLong:
			batch = append(batch, job{line: lineNo, err: posError(-1, "input line longer than %d bytes: ignored", maxLine)})
		case len(bytes.TrimSpace(line)) > 0:
			r, perr := parseRequest(line, "")
			if perr == nil && r.Op == "send" {
				perr = d.checkSize(r)
			}
			batch = append(batch, job{line: lineNo, req: r, err: perr})
		}
		if err != nil {
			q.push(batch)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(batch) > 0 && (len(batch) >= maxBatchLines || !lineBuffered(br)) {
			q.push(batch)
			batch = nil
		}
	}
	q.push(batch)
	return ctx.Err()
}

// lineBuffered reports whether a complete line waits in br's buffer.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// readLine reads one line of at most max bytes; a longer line is consumed
// and reported as tooLong.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, tooLong, err
	}
}

// runJobs executes a batch in order and writes its answers.
func (d *Daemon) runJobs(ctx context.Context, jobs []job) {
	var answers [][]byte
	var sends []job
	flushSends := func() {
		if len(sends) == 0 {
			return
		}
		reqs := make([]request, len(sends))
		for i, j := range sends {
			reqs[i] = j.req
		}
		res, peers := d.sendAll(ctx, reqs, true)
		for i, r := range res {
			if r.Err != nil {
				answers = append(answers, d.errorLine(sends[i], r.Err))
			} else {
				answers = append(answers, seqEvent("sent", reqs[i].ID, reqs[i].To, r.Seq))
			}
		}
		t, held := d.releaseAcks(peers, answers)
		answers, sends = nil, nil
		if err := d.publish(t, held); err != nil {
			d.log.Error("writing answers failed", "err", err)
		}
	}
	for _, j := range jobs {
		switch {
		case j.err != nil:
			flushSends()
			answers = append(answers, d.errorLine(j, j.err))
		case j.req.Op == "send":
			sends = append(sends, j)
		case kernelAsync(j.req.Op):
			// Answered when the peer has answered, possibly after later
			// lines' answers.
			flushSends()
			d.runAsync(j)
		default:
			flushSends()
			res, err := d.runOp(j.req)
			if err != nil {
				answers = append(answers, d.errorLine(j, err))
			} else {
				answers = append(answers, mustJSON(res))
			}
		}
	}
	flushSends()
	if len(answers) > 0 && d.out != nil {
		if err := d.out.write(answers...); err != nil {
			d.log.Error("writing answers failed", "err", err)
		}
	}
}

// runAsync runs a kernel op that waits for a peer and writes its answer
// when it comes.
func (d *Daemon) runAsync(j job) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var line []byte
		if res, err := d.runOp(j.req); err != nil {
			line = d.errorLine(j, err)
		} else {
			line = mustJSON(res)
		}
		if d.out != nil {
			if err := d.out.write(line); err != nil {
				d.log.Error("writing an answer failed", "err", err)
			}
		}
	}()
}

func (d *Daemon) errorLine(j job, err error) []byte {
	e := errorEvent{Event: "error", ID: j.req.ID, Op: j.req.Op, Error: err.Error(), Line: j.line}
	var re *RequestError
	if errors.As(err, &re) {
		e.Field = re.Field
	}
	return mustJSON(e)
}

// jobQueue hands batches from the reader to the executor, bounded in lines.
type jobQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	jobs   []job
	max    int
	closed bool
}

func newJobQueue(max int) *jobQueue {
	q := &jobQueue{max: max}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push queues jobs, waiting while the queue is full.
func (q *jobQueue) push(jobs []job) {
	if len(jobs) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) > 0 && len(q.jobs)+len(jobs) > q.max {
		q.cond.Wait()
	}
	q.jobs = append(q.jobs, jobs...)
	q.cond.Broadcast()
}

// take returns everything queued, waiting for something; false once the
// queue is closed and empty.
func (q *jobQueue) take() ([]job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.jobs) == 0 {
		return nil, false
	}
	jobs := q.jobs
	q.jobs = nil
	q.cond.Broadcast()
	return jobs, true
}

func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}
