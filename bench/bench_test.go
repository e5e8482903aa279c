package bench

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the test binary serve as the child process of the scale
// and startup cases.
func TestMain(m *testing.M) {
	if os.Getenv(ChildEnv) != "" {
		os.Exit(RunChild(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// TestHarnessRuns runs two tiny real cases and checks their rows are
// well formed (no speed is asserted).
func TestHarnessRuns(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Quick: true, Only: regexp.MustCompile(`^(durable/fdatasync|scale/500)$`), ChildExe: exe}
	res, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Result{}
	for _, r := range res {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Name, r.Error)
		}
		names[r.Name] = r
	}
	for _, want := range []string{"durable/" + syncName + "/rate", "scale/50/connected", "scale/50/heap-per-peer"} {
		r, ok := names[want]
		if !ok {
			t.Errorf("no row %s in %v", want, res)
			continue
		}
		if r.Runs < 1 || r.Min > r.Value || r.Value > r.Max {
			t.Errorf("%s: median %v outside [%v, %v] over %d runs", want, r.Value, r.Min, r.Max, r.Runs)
		}
	}
	if r := names["scale/50/connected"]; r.Value != 50 {
		t.Errorf("scale/50/connected = %v", r.Value)
	}
	if r := names["durable/"+syncName+"/rate"]; r.Runs < 5 {
		t.Errorf("rate over %d runs, want at least 5", r.Runs)
	}
}

// TestFailuresReported: a case that fails, one that panics and one that
// cannot run each become a row with the reason, and the cases after them
// still run.
func TestFailuresReported(t *testing.T) {
	ran := false
	cs := []benchCase{
		{"bad", func(context.Context, *env) error { return errors.New("no first connection") }},
		{"panics", func(context.Context, *env) error { panic("boom") }},
		{"absent", func(context.Context, *env) error { return skip("no binary") }},
		{"good", func(_ context.Context, e *env) error {
			ran = true
			e.add(figure("good/x", "ms", "lower", []float64{3, 1, 2, 5, 4}, ""))
			return nil
		}},
	}
	var emitted []Result
	res, err := runCases(context.Background(), Options{}, cs, func(r Result) { emitted = append(emitted, r) })
	if err != nil {
		t.Fatal(err)
	}
	if !ran || len(res) != 4 || len(emitted) != 4 {
		t.Fatalf("ran %v, results %+v", ran, res)
	}
	if res[0].Error != "no first connection" || !strings.Contains(res[1].Error, "boom") || !res[2].Skipped {
		t.Errorf("rows %+v", res[:3])
	}
	if g := res[3]; g.Value != 3 || g.Min != 1 || g.Max != 5 || g.Runs != 5 {
		t.Errorf("good row %+v", g)
	}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil || !strings.Contains(b.String(), "ERROR") || !strings.Contains(b.String(), "SKIPPED") {
		t.Errorf("table %q, %v", b.String(), err)
	}
}

// BenchmarkPairs runs the TCP transport pairs under the Go benchmark
// harness, for profiling:
//
//	go test -run '^$' -bench Pairs -cpuprofile cpu.out ./bench/
func BenchmarkPairs(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{100, 64 << 10} {
		b.Run("ours-"+sizeName(size), func(b *testing.B) {
			p, err := newOursPair(ctx, "tcp", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.close()
			v, err := p.throughput(size, 2*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(v, "msgs/s")
		})
		b.Run("libp2p-bufio-"+sizeName(size), func(b *testing.B) {
			p, err := newLibp2pPair(ctx, "tcp", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.close()
			v, err := p.throughput(size, 2*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(v, "msgs/s")
		})
	}
}
