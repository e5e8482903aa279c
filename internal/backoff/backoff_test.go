package backoff

import (
	"testing"
	"time"
)

func TestCeilingDefaults(t *testing.T) {
	want := []time.Duration{500, 1000, 2000, 4000, 8000, 10000, 10000, 10000}
	for i, w := range want {
		if got := (Policy{}).Ceiling(i + 1); got != w*time.Millisecond {
			t.Errorf("Ceiling(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := (Policy{}).Ceiling(0); got != 500*time.Millisecond {
		t.Errorf("Ceiling(0) = %v, want the first attempt's 500ms", got)
	}
}

func TestCeilingCustomAndEdgeCases(t *testing.T) {
	p := Policy{Base: 5 * time.Second, Max: 60 * time.Second}
	for i, w := range []time.Duration{5, 10, 20, 40, 60, 60} {
		if got := p.Ceiling(i + 1); got != w*time.Second {
			t.Errorf("relay Ceiling(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := (Policy{Base: time.Second, Max: time.Millisecond}).Ceiling(3); got != time.Second {
		t.Errorf("Max below Base: Ceiling = %v, want Base", got)
	}
	for _, attempt := range []int{64, 1000, 1 << 30} {
		if got := p.Ceiling(attempt); got != 60*time.Second {
			t.Errorf("Ceiling(%d) = %v, want the cap (no overflow)", attempt, got)
		}
	}
}

func TestDelayFullJitter(t *testing.T) {
	p := Policy{}
	seen := map[time.Duration]bool{}
	for range 2000 {
		d := p.Delay(3)
		if d < 0 || d >= 2*time.Second {
			t.Fatalf("Delay(3) = %v outside [0, 2s)", d)
		}
		seen[d/(100*time.Millisecond)] = true
	}
	if len(seen) < 15 {
		t.Errorf("delays cover only %d of 20 buckets of 100ms: not uniform jitter", len(seen))
	}
	fixed := Policy{Rand: func() float64 { return 0.5 }}
	if got := fixed.Delay(2); got != 500*time.Millisecond {
		t.Errorf("Delay(2) with rand 0.5 = %v, want 500ms", got)
	}
	if got := (Policy{Rand: func() float64 { return 0 }}).Delay(9); got != 0 {
		t.Errorf("Delay with rand 0 = %v, want 0", got)
	}
}
