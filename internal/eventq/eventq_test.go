package eventq

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOrderAndDrainOnClose(t *testing.T) {
	var wg sync.WaitGroup
	var got []int
	release := make(chan struct{})
	q := New(func(i int) {
		if i == 0 {
			<-release // a slow handler must not block producers
		}
		got = append(got, i)
	}, &wg)
	const n = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if !q.Push(i) {
				t.Errorf("push %d refused before Close", i)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Push blocked behind a slow handler")
	}
	q.Close()
	if q.Push(n) {
		t.Error("push after Close accepted")
	}
	close(release)
	wg.Wait()
	if len(got) != n {
		t.Fatalf("delivered %d events, want %d (pending events must be delivered after Close)", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("event %d delivered as %d: out of order", i, v)
		}
	}
}

func TestNilHandler(t *testing.T) {
	var wg sync.WaitGroup
	q := New[int](nil, &wg)
	if q.Push(1) {
		t.Error("a queue without handler accepted an event")
	}
	q.Close()
	q.Close()
	wg.Wait()
}
