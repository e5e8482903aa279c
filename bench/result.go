package bench

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one benchmark figure. Value is the median of Runs runs of ours
// (Min and Max their range); Baseline, BaselineMin and BaselineMax the same
// for the baseline, measured in runs alternating with ours, and Ratio =
// Value / Baseline. Samples is, for a percentile, the number of latency
// samples behind each run's figure; otherwise the number of runs. A case
// that failed or was skipped has Error set and no value.
type Result struct {
	Name        string   `json:"name"`
	Value       float64  `json:"value"`
	Unit        string   `json:"unit"`
	Baseline    *float64 `json:"baseline,omitempty"`
	Ratio       *float64 `json:"ratio,omitempty"`
	Min         float64  `json:"min"`
	Max         float64  `json:"max"`
	BaselineMin *float64 `json:"baseline_min,omitempty"`
	BaselineMax *float64 `json:"baseline_max,omitempty"`
	Samples     int      `json:"samples"`
	Runs        int      `json:"runs"`
	// Better is "higher" or "lower": which way the value improves.
	Better string `json:"better,omitempty"`
	// Goal is the target, in words, when there is one.
	Goal    string `json:"goal,omitempty"`
	Note    string `json:"note,omitempty"`
	Error   string `json:"error,omitempty"`
	Skipped bool   `json:"skipped,omitempty"`
}

// summary is the median and range of a series of runs.
type summary struct {
	med, lo, hi float64
	n           int
}

func summarize(v []float64) summary {
	if len(v) == 0 {
		return summary{med: math.NaN(), lo: math.NaN(), hi: math.NaN()}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{med: med, lo: s[0], hi: s[len(s)-1], n: len(s)}
}

// figure is a result without a baseline.
func figure(name, unit, better string, ours []float64, note string) Result {
	o := summarize(ours)
	return Result{Name: name, Value: o.med, Unit: unit, Min: o.lo, Max: o.hi, Samples: o.n, Runs: o.n, Better: better, Note: note}
}

// compared is a result next to its baseline.
func compared(name, unit, better string, ours, base []float64, note string) Result {
	r := figure(name, unit, better, ours, note)
	b := summarize(base)
	r.Baseline, r.BaselineMin, r.BaselineMax = &b.med, &b.lo, &b.hi
	if b.med != 0 && !math.IsNaN(b.med) {
		ratio := r.Value / b.med
		r.Ratio = &ratio
	}
	return r
}

// failed is the row of a case that could not be measured.
func failed(name string, err error) Result {
	return Result{Name: name, Error: err.Error()}
}

// skipped is the row of a case that was not run, with the reason.
func skipped(name, why string) Result {
	r := failed(name, fmt.Errorf("skipped: %s", why))
	r.Skipped = true
	return r
}

// withGoal sets the goal text.
func (r Result) withGoal(goal string) Result { r.Goal = goal; return r }

// withSamples sets the per-run sample count of a percentile row.
func (r Result) withSamples(n int) Result { r.Samples = n; return r }

// pct is the q-quantile of ds (nearest rank).
func pct(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, max(0, int(math.Ceil(q*float64(len(s))))-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyRows turns per-run latency samples into p50 (and p99 when every
// run has at least 1,000 samples) rows; base may be nil.
func latencyRows(name string, ours, base [][]time.Duration, note string) []Result {
	n := math.MaxInt
	for _, r := range append(slices.Clone(ours), base...) {
		n = min(n, len(r))
	}
	var out []Result
	for _, q := range []struct {
		name string
		q    float64
		need int
	}{{"p50", 0.5, 1}, {"p99", 0.99, 1000}} {
		if n < q.need {
			continue
		}
		per := func(runs [][]time.Duration) []float64 {
			var v []float64
			for _, r := range runs {
				v = append(v, ms(pct(r, q.q)))
			}
			return v
		}
		var r Result
		if base != nil {
			r = compared(name+"-"+q.name, "ms", "lower", per(ours), per(base), note)
		} else {
			r = figure(name+"-"+q.name, "ms", "lower", per(ours), note)
		}
		out = append(out, r.withSamples(n))
	}
	return out
}

// alternate runs ours and each baseline in turn, runs times (ours, base…,
// ours, base…), and returns each one's series.
func alternate[T any](runs int, ours func() (T, error), bases ...func() (T, error)) ([]T, [][]T, error) {
	var o []T
	b := make([][]T, len(bases))
	for range runs {
		v, err := ours()
		if err != nil {
			return nil, nil, err
		}
		o = append(o, v)
		for i, f := range bases {
			v, err := f()
			if err != nil {
				return nil, nil, fmt.Errorf("baseline: %w", err)
			}
			b[i] = append(b[i], v)
		}
	}
	return o, b, nil
}

// fanOut runs f(worker) for the jobs 0..n-1 on the given number of
// workers (each job once), and returns the first error.
func fanOut(workers, n int, f func(worker int) error) error {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := f(w); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	err, _ := firstErr.Load().(error)
	return err
}
