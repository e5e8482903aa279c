package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/ocapnet/ocapnet/bench"
)

func init() {
	register("bench", command{
		summary: "measure throughput, latency, durability cost, recovery, memory and scale on loopback, each next to its baseline",
		run:     runBench,
	})
}

func runBench(args []string, stdout, stderr io.Writer) int {
	if os.Getenv(bench.ChildEnv) != "" { // a measurement in a separate process (scale, startup)
		return bench.RunChild(os.Stdin, stdout)
	}
	fs := newFlagSet("bench", stderr, "[--json] [--quick] [--js] [--only REGEXP] [--runs N] [--list]")
	asJSON := fs.Bool("json", false, "print only JSON on stdout: one object per benchmark (name, value, unit, baseline, ratio, min, max, samples, runs, note, error)")
	quick := fs.Bool("quick", false, "short measurements (a smoke run)")
	js := fs.Bool("js", false, "also run the js-libp2p pair as the echo baseline (needs Node.js 22 and `npm ci --prefix interop/node`)")
	only := fs.String("only", "", "run only the cases whose name matches this regular expression (see --list)")
	runs := fs.Int("runs", 5, "runs per figure (at least 5)")
	list := fs.Bool("list", false, "list the cases and exit")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *list {
		fmt.Fprintln(stdout, strings.Join(bench.CaseNames(), "\n"))
		return 0
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
		return 1
	}
	opts := bench.Options{Quick: *quick, JS: *js, Runs: *runs, PeerExe: exe, ChildExe: exe, ChildArgs: []string{"bench"}, Progress: stderr}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(stderr, "ocapnet bench: --only: %v\n", err)
			return 2
		}
		opts.Only = re
	}
	var emit func(bench.Result)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		emit = func(r bench.Result) { enc.Encode(r) }
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	results, err := bench.Run(ctx, opts, emit)
	if !*asJSON {
		bench.WriteTable(stdout, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
		return 1
	}
	return 0
}
