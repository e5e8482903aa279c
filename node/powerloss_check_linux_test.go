package node

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// powerLog reads what TestPowerLoss's children print and checks it against
// docs/DELIVERY.md: every message whose Send returned is delivered, in
// order, with repeats only where marked as redeliveries; no sequence
// number is assigned twice; no side ever looks restarted to the other.
type powerLog struct {
	mu         sync.Mutex
	sent       map[string]bool
	delivered  map[string]bool
	maxSent    uint64 // highest seq whose Send returned, in the current numbering
	top        uint64 // highest seq delivered in order
	redeliv    int
	rolledBack uint64 // Send returned, then the sender's store forgot the number
	acked      uint64
	finished   bool // the sender reported "acked" or "stuck"
	stuck      int
	problems   []string
}

func newPowerLog() *powerLog {
	return &powerLog{sent: map[string]bool{}, delivered: map[string]bool{}}
}

func (l *powerLog) problem(format string, args ...any) {
	if len(l.problems) < 1000 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// read reads a child's output; ready is closed on its "ready" line.
func (l *powerLog) read(r io.Reader, role string, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text() == "ready" && ready != nil {
			close(ready)
			ready = nil
		}
		l.line(role, sc.Text())
	}
}

func (l *powerLog) line(role, text string) {
	f := strings.Fields(text)
	num := func(i int) uint64 {
		v, _ := strconv.ParseUint(f[i], 10, 64)
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case len(f) == 1 && f[0] == "ready":
	case len(f) == 2 && f[0] == "start":
		if next := num(1); next < l.maxSent {
			l.rolledBack += l.maxSent - next
			l.problem("sender restarted remembering seq %d, but Send had returned for up to %d", next, l.maxSent)
			l.maxSent = next
		}
	case len(f) == 3 && f[0] == "sent":
		l.maxSent = max(l.maxSent, num(1))
		l.sent["["+f[1]+","+f[2]+"]"] = true
	case len(f) == 2 && (f[0] == "acked" || f[0] == "stuck"):
		l.finished = true
		if f[0] == "acked" {
			l.acked = num(1)
		} else {
			l.stuck = int(num(1))
		}
	case len(f) == 1 && f[0] == "restarted":
		l.problem("%s saw its peer restarted (a new incarnation: the peer lost its state)", role)
	case len(f) == 2 && f[0] == "gaveup":
		l.problem("%s gave up on %s messages", role, f[1])
	case len(f) == 3 && f[0] == "gap":
		l.problem("%s accepted a gap %s..%s", role, f[1], f[2])
	case len(f) == 4 && f[0] == "recv":
		s := num(1)
		redelivery := f[3] == "1"
		l.delivered[f[2]] = true
		if !strings.HasPrefix(f[2], "["+f[1]+",") {
			l.problem("seq %s carried %s", f[1], f[2])
		}
		switch {
		case s == l.top+1:
			l.top = s
			if redelivery {
				l.redeliv++
			}
		case s <= l.top && redelivery:
			l.redeliv++
		case s <= l.top:
			l.problem("seq %d delivered again, not marked as a redelivery (top %d)", s, l.top)
		default:
			l.problem("gap: got %d after %d", s, l.top)
		}
	default:
		l.problem("%s printed %q", role, text)
	}
}

// lost counts the messages whose Send returned and that were never
// delivered.
func (l *powerLog) lost() int {
	n := 0
	for p := range l.sent {
		if !l.delivered[p] {
			n++
		}
	}
	return n
}
