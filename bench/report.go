package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// num formats a figure with about four significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 1000 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		// four significant digits, never an exponent
		d := 3 - int(math.Floor(math.Log10(math.Abs(v))))
		return strconv.FormatFloat(v, 'f', max(0, d), 64)
	}
}

// WriteTable prints results as a table: median [min–max] of ours and of the
// baseline, the ratio, the runs (and latency samples per run), the goal and
// the note; failed and skipped cases show their reason.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tours median [min–max]\tunit\tbaseline median [min–max]\tratio\truns (samples)\tgoal\tnote")
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t%s\n", r.Name, map[bool]string{true: "SKIPPED", false: "ERROR"}[r.Skipped], oneLine(r.Error))
			continue
		}
		base, ratio := "", ""
		if r.Baseline != nil {
			base = fmt.Sprintf("%s [%s–%s]", num(*r.Baseline), num(*r.BaselineMin), num(*r.BaselineMax))
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		n := fmt.Sprint(r.Runs)
		if r.Samples != r.Runs {
			n = fmt.Sprintf("%d (%d)", r.Runs, r.Samples)
		}
		fmt.Fprintf(tw, "%s\t%s [%s–%s]\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, num(r.Value), num(r.Min), num(r.Max), r.Unit, base, ratio, n, r.Goal, r.Note)
	}
	return tw.Flush()
}

// oneLine is the first line of s.
func oneLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
