package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ocapnet/ocapnet/bench"
)

func init() {
	register("bench", command{
		summary: "measure throughput, latency, durability cost, recovery and memory on loopback, each next to its baseline",
		run:     runBench,
	})
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stderr, "[--json] [--quick] [--full]")
	asJSON := fs.Bool("json", false, "print only JSON on stdout: one object per benchmark (name, value, unit, baseline, ratio)")
	quick := fs.Bool("quick", false, "short measurements (a smoke run)")
	full := fs.Bool("full", false, "use full ocapnet transports as the 500 peers instead of lightweight TCP-only hosts")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	opts := bench.Options{Quick: *quick, Full: *full}
	var emit func(bench.Result)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		emit = func(r bench.Result) { enc.Encode(r) }
		opts.Progress = stderr
	} else {
		opts.Progress = stderr
	}
	results, err := bench.Run(context.Background(), opts, emit)
	if !*asJSON {
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "benchmark\tvalue\tunit\tbaseline\tratio\tnote")
		for _, r := range results {
			base, ratio := "", ""
			if r.Baseline != nil {
				base = fmt.Sprintf("%.4g", *r.Baseline)
			}
			if r.Ratio != nil {
				ratio = fmt.Sprintf("%.2f", *r.Ratio)
			}
			fmt.Fprintf(tw, "%s\t%.4g\t%s\t%s\t%s\t%s\n", r.Name, r.Value, r.Unit, base, ratio, r.Note)
		}
		tw.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
		return 1
	}
	return 0
}
