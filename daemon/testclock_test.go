package daemon

import (
	"strings"
	"testing"
	"time"
)

// The clock op is refused without a TestClock; with one it steps the
// clock, and a forward step makes the node's wake detector fire.
func TestClockOpTestOnly(t *testing.T) {
	plain, _ := startStdio(t, testOptions(t))
	plain.send(`{"op":"clock","id":1,"jumpMs":60000}`)
	if m := plain.next("error", 10*time.Second); !strings.Contains(m["error"].(string), "test-only") {
		t.Fatalf("clock op without a TestClock: %v", m)
	}

	o := testOptions(t)
	o.TestClock = &TestClock{}
	o.Node.Transport.Now = o.TestClock.Now
	o.Node.Transport.WakeInterval, o.Node.Transport.WakeThreshold = 50*time.Millisecond, 100*time.Millisecond
	d, _ := startStdio(t, o)
	before := o.TestClock.Now()
	d.send(`{"op":"clock","id":2,"jumpMs":120000}`)
	if m := d.next("clock", 10*time.Second); m["offsetMs"] != float64(120000) {
		t.Fatalf("clock answer: %v", m)
	}
	if got := o.TestClock.Now().Sub(before); got < 2*time.Minute {
		t.Fatalf("clock moved %v, want ≥ 2m", got)
	}
	if m := d.next("wake", 10*time.Second); m["gapMs"].(float64) < 120000 {
		t.Fatalf("wake after a 2 min step: %v", m)
	}
	d.send(`{"op":"clock","id":3,"jumpMs":-180000}`)
	if m := d.next("clock", 10*time.Second); m["offsetMs"] != float64(-60000) {
		t.Fatalf("clock answer after a backward step: %v", m)
	}
}
