package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/ocapnet/ocapnet/store"
)

// eventLog is the API's durable event log on top of the store's (AppendEvent,
// Events, TrimEvents), with what the store does not keep: the time of every
// event, the log's size, retention by size and age, and a wake-up for live
// readers.
//
// Each stored event is a header (a version byte and the time in Unix
// milliseconds) and the event's JSON; events stored by earlier versions (bare
// JSON) count as appended when the daemon started. The log is accounted in
// segments of consecutive events (at most segmentEvents, spanning at most
// segmentSpan), so the index stays small; retention deletes whole segments,
// oldest first, and then announces what it deleted with a "dropped" event.
type eventLog struct {
	st       *store.Store
	maxBytes int64         // negative: no limit
	maxAge   time.Duration // negative: no limit
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	segs     []segment // oldest first
	total    int64     // bytes stored
	head     uint64    // last ID appended
	trimmed  uint64    // every event with an ID up to this was deleted
	appended int64     // bytes appended since start (for readers' lag)
	wake     chan struct{}

	trimMu  sync.Mutex // one trim (acknowledgement or retention) at a time
	trigger chan struct{}
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

type segment struct {
	first, last    uint64
	n              int
	bytes          int64
	oldest, newest time.Time
}

const (
	headerVersion = 1
	headerLen     = 9
	segmentEvents = 64
	segmentSpan   = time.Minute
	loadPage      = 512
	// retainPercent is how full (of its size limit) retention leaves the log.
	retainPercent = 90
)

// storedEvent is one event read from the log.
type storedEvent struct {
	ID   uint64
	At   time.Time
	Data []byte // the event's JSON
	size int64  // bytes stored
}

func decodeStored(e store.Event, fallback time.Time) storedEvent {
	if len(e.Data) >= headerLen && e.Data[0] == headerVersion {
		ms := int64(binary.BigEndian.Uint64(e.Data[1:headerLen]))
		return storedEvent{e.ID, time.UnixMilli(ms), e.Data[headerLen:], int64(len(e.Data))}
	}
	return storedEvent{e.ID, fallback, e.Data, int64(len(e.Data))}
}

// openEventLog loads the log's accounting from the store (one pass over it)
// and starts the retention loop.
// now is the clock (nil: time.Now).
func openEventLog(st *store.Store, maxBytes int64, maxAge time.Duration, log *slog.Logger, now func() time.Time) (*eventLog, error) {
	if now == nil {
		now = time.Now
	}
	l := &eventLog{st: st, maxBytes: maxBytes, maxAge: maxAge, log: log, now: now, wake: make(chan struct{}),
		trigger: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	start := l.now()
	var after uint64
	for {
		evs, err := st.Events(after, loadPage)
		if err != nil {
			return nil, fmt.Errorf("reading the event log: %w", err)
		}
		for _, e := range evs {
			se := decodeStored(e, start)
			l.account(se.ID, se.size, se.At)
			after = e.ID
		}
		if len(evs) < loadPage {
			break
		}
	}
	// The head is the newest event stored (a log emptied by
	// acknowledgements learns it again at the next append).
	l.head = after
	go l.retentionLoop()
	l.poke()
	return l, nil
}

// account adds one event to the segments (events may be accounted out of
// order when appends run concurrently: an ID inside a segment's range joins
// it).
func (l *eventLog) account(id uint64, size int64, at time.Time) {
	if id <= l.trimmed {
		return // already deleted
	}
	n := len(l.segs)
	add := func(s *segment) {
		l.total += size
		s.last = max(s.last, id)
		s.n++
		s.bytes += size
		s.oldest, s.newest = minTime(s.oldest, at), maxTime(s.newest, at)
	}
	if n > 0 && id < l.segs[0].first {
		// Appended before the first event accounted, by a concurrent
		// append that got its ID earlier and reached here later.
		s := &l.segs[0]
		s.first = id
		add(s)
		return
	}
	for i := n - 1; i >= 0; i-- {
		s := &l.segs[i]
		if id < s.first {
			continue
		}
		if id <= s.last || i < n-1 { // inside s, or between s and the next one
			add(s)
			return
		}
		break
	}
	if n > 0 {
		if s := &l.segs[n-1]; s.n < segmentEvents && at.Sub(s.oldest) < segmentSpan {
			add(s)
			return
		}
	}
	l.segs = append(l.segs, segment{first: id, last: id})
	add(&l.segs[len(l.segs)-1])
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// append stores one event and wakes the live readers.
func (l *eventLog) append(data []byte) (uint64, error) {
	at := l.now()
	rec := l.record(data, at)
	id, err := l.st.AppendEvent(rec)
	if err != nil {
		return 0, err
	}
	l.appended1(id, int64(len(rec)), at)
	return id, nil
}

// appendAsync queues one event and returns at once; once it is stored the
// live readers are woken. The store commits it before anything queued
// later (store.UpdateAsync), and refuses every later update if it fails,
// so a fact recorded after it (a message's delivery) is never durable
// without it. done, if not nil, gets the result on the store's commit
// goroutine.
func (l *eventLog) appendAsync(data []byte, done func(error)) {
	at := l.now()
	rec := l.record(data, at)
	l.st.AppendEventAsync(rec, func(id uint64, err error) {
		if err == nil {
			l.appended1(id, int64(len(rec)), at)
		} else if !errors.Is(err, store.ErrClosed) {
			l.log.Error("storing an event failed; the store refuses further writes until the daemon restarts", "err", err)
		}
		if done != nil {
			done(err)
		}
	})
}

func (l *eventLog) record(data []byte, at time.Time) []byte {
	rec := make([]byte, headerLen, headerLen+len(data))
	rec[0] = headerVersion
	binary.BigEndian.PutUint64(rec[1:], uint64(at.UnixMilli()))
	return append(rec, data...)
}

// appended1 accounts a stored event and wakes the live readers.
func (l *eventLog) appended1(id uint64, size int64, at time.Time) {
	l.mu.Lock()
	l.account(id, size, at)
	l.head = max(l.head, id)
	l.appended += size
	over := l.maxBytes > 0 && l.total > l.maxBytes
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	if over {
		l.poke()
	}
}

// wait returns a channel closed at the next append.
func (l *eventLog) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wake
}

// position returns the first ID still stored (head+1 when empty), the head
// and the bytes appended since start.
func (l *eventLog) position() (first, head uint64, appended int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first = l.head + 1
	if len(l.segs) > 0 {
		first = l.segs[0].first
	}
	return first, l.head, l.appended
}

// read returns events after ID after, up to budget bytes (at least one).
func (l *eventLog) read(after uint64, budget int) ([]storedEvent, error) {
	evs, err := l.st.EventsWithin(after, math.MaxInt, budget)
	out := make([]storedEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, decodeStored(e, time.Time{}))
	}
	return out, err
}

// trim deletes every event with ID ≤ upTo (a consumer acknowledged them).
func (l *eventLog) trim(upTo uint64) (int, error) {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	n, err := l.st.TrimEvents(upTo)
	if err != nil {
		return n, err
	}
	return n, l.forget(upTo)
}

// forget drops the accounting of events ≤ upTo; a segment cut in two is
// counted again from the store.
func (l *eventLog) forget(upTo uint64) error {
	l.mu.Lock()
	l.trimmed = max(l.trimmed, upTo)
	i := 0
	for i < len(l.segs) && l.segs[i].last <= upTo {
		l.total -= l.segs[i].bytes
		i++
	}
	l.segs = l.segs[i:]
	var cut *segment
	if len(l.segs) > 0 && l.segs[0].first <= upTo {
		cut = &segment{}
		*cut = l.segs[0]
	}
	l.mu.Unlock()
	if cut == nil {
		return nil
	}
	evs, err := l.st.Events(upTo, cut.n)
	if err != nil {
		return err
	}
	s := segment{first: upTo + 1, last: cut.last}
	for _, e := range evs {
		if e.ID > cut.last {
			break
		}
		se := decodeStored(e, cut.oldest)
		s.n++
		s.bytes += se.size
		s.oldest, s.newest = minTime(s.oldest, se.At), maxTime(s.newest, se.At)
	}
	l.mu.Lock()
	if len(l.segs) > 0 && l.segs[0].first == cut.first {
		l.total += s.bytes - l.segs[0].bytes
		l.segs[0] = s
		if s.n == 0 {
			l.segs = l.segs[1:]
		}
	}
	l.mu.Unlock()
	return nil
}

func (l *eventLog) poke() {
	select {
	case l.trigger <- struct{}{}:
	default:
	}
}

// retentionLoop applies the limits after appends that went over the size
// and periodically for the age.
func (l *eventLog) retentionLoop() {
	defer close(l.stopped)
	every := time.Minute
	if l.maxAge > 0 {
		every = min(max(l.maxAge/20, 100*time.Millisecond), time.Minute)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.trigger:
		case <-tick.C:
		}
		if err := l.enforce(); err != nil && !errors.Is(err, store.ErrClosed) {
			l.log.Error("applying the event log's retention failed", "err", err)
		}
	}
}

// enforce deletes the oldest segments while the log is over its size (down
// to retainFraction of it, so that the next appends do not trim again at
// once), and those whose newest event is over the age limit, then announces
// the range.
func (l *eventLog) enforce() error {
	l.trimMu.Lock()
	defer l.trimMu.Unlock()
	now := l.now()
	l.mu.Lock()
	var upTo, from uint64
	var count int
	var bySize, byAge bool
	total := l.total
	over := l.maxBytes > 0 && total > l.maxBytes
	for _, s := range l.segs {
		over = over && total > l.maxBytes*retainPercent/100
		old := l.maxAge > 0 && now.Sub(s.newest) > l.maxAge
		if !over && !old {
			break
		}
		bySize, byAge = bySize || over, byAge || old
		if from == 0 {
			from = s.first
		}
		upTo, total, count = s.last, total-s.bytes, count+s.n
	}
	l.mu.Unlock()
	if upTo == 0 {
		return nil
	}
	if _, err := l.st.TrimEvents(upTo); err != nil {
		return err
	}
	if err := l.forget(upTo); err != nil {
		return err
	}
	var reason string
	switch {
	case bySize:
		reason = fmt.Sprintf("the event log was over its size limit of %d bytes (--event-max-bytes)", l.maxBytes)
	case byAge:
		reason = fmt.Sprintf("the events were older than the age limit of %v (--event-max-age)", l.maxAge)
	}
	l.log.Warn("event log retention deleted events no consumer acknowledged", "from", from, "to", upTo, "count", count, "reason", reason)
	_, err := l.append(mustJSON(struct {
		Event  string `json:"event"`
		From   uint64 `json:"from"`
		To     uint64 `json:"to"`
		Count  int    `json:"count"`
		Reason string `json:"reason"`
	}{"dropped", from, upTo, count, reason}))
	return err
}

// stop ends the retention loop.
func (l *eventLog) stop() {
	l.once.Do(func() { close(l.done) })
	<-l.stopped
}
