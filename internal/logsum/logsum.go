// Package logsum keeps repeated log lines from flooding a log: the first
// line of each kind in an interval is written at once, and the rest of that
// interval are counted and written as one summary line ("…, and N more") when
// the interval ends. A peer that sends a million bad frames costs a few
// lines, not a million.
package logsum

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the summary interval when none is given.
const DefaultInterval = 10 * time.Second

// Logger summarises lines by kind. Create it with New; call Stop when its
// owner stops.
type Logger struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex // guards kinds
	kinds map[string]*kind

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type kind struct {
	level      slog.Level
	msg        string
	suppressed int
	last       []any // attributes of the last suppressed line
}

// New starts a summarising logger on log with the given interval (0:
// DefaultInterval).
func New(log *slog.Logger, interval time.Duration) *Logger {
	if interval <= 0 {
		interval = DefaultInterval
	}
	l := &Logger{log: log, interval: interval, kinds: map[string]*kind{}, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// Warn logs msg at WARN, at most once per interval for the same key;
// further calls are summarised.
func (l *Logger) Warn(key, msg string, attrs ...any) { l.Log(slog.LevelWarn, key, msg, attrs...) }

// Info is Warn at INFO.
func (l *Logger) Info(key, msg string, attrs ...any) { l.Log(slog.LevelInfo, key, msg, attrs...) }

// Log logs msg at level, at most once per interval for the same key.
func (l *Logger) Log(level slog.Level, key, msg string, attrs ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	k := l.kinds[key]
	if k != nil {
		k.suppressed++
		k.last = attrs
		l.mu.Unlock()
		return
	}
	l.kinds[key] = &kind{level: level, msg: msg}
	l.mu.Unlock()
	l.log.Log(context.Background(), level, msg, attrs...)
}

func (l *Logger) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush()
			return
		case <-t.C:
			l.flush()
		}
	}
}

// flush writes a summary for every kind that was suppressed and starts a
// new interval.
func (l *Logger) flush() {
	l.mu.Lock()
	kinds := l.kinds
	l.kinds = map[string]*kind{}
	l.mu.Unlock()
	for _, k := range kinds {
		if k.suppressed == 0 {
			continue
		}
		attrs := append([]any{"more", k.suppressed, "interval", l.interval}, k.last...)
		l.log.Log(context.Background(), k.level, k.msg+" (repeated; summary of the interval, last one's details)", attrs...)
	}
}

// Stop writes the pending summaries and ends the logger's goroutine. It is
// idempotent.
func (l *Logger) Stop() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}
