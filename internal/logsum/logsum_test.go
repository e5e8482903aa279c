package logsum

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buf) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.b.String()), "\n")
}

// A flood of one kind costs one line at once and one summary per interval;
// another kind is not hidden by it.
func TestFloodSummarised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out buf
		l := New(slog.New(slog.NewTextHandler(&out, nil)), time.Second)
		for i := range 137050 {
			l.Warn("bad-frame", "malformed frame dropped", "peer", "p1", "n", i)
		}
		l.Warn("other", "something else")
		if got := out.lines(); len(got) != 2 {
			t.Fatalf("%d lines before the interval ended, want 2:\n%s", len(got), strings.Join(got, "\n"))
		}
		time.Sleep(time.Second) // fake clock: the interval ends
		synctest.Wait()
		got := out.lines()
		if len(got) != 3 || !strings.Contains(got[2], "more=137049") || !strings.Contains(got[2], "n=137049") {
			t.Fatalf("after the interval:\n%s", strings.Join(got, "\n"))
		}
		l.Warn("bad-frame", "malformed frame dropped", "n", "again")
		if got := out.lines(); len(got) != 4 {
			t.Fatalf("a new interval must log its first line at once:\n%s", strings.Join(got, "\n"))
		}
		l.Stop()
		l.Stop()
	})
}
