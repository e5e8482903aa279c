// Package bench measures ocapnet on loopback for `ocapnet bench`
// (docs/BENCHMARKS.md). Every figure is the median of at least five runs,
// printed with its range; where there is a baseline, its runs alternate
// with ours (ours, baseline, ours, baseline, …) so that a noisy machine
// moves both. Baselines are as strong as we can write them: the same
// go-libp2p stack and plain TCP writing through a buffered writer flushed
// when nothing more is ready, the disk's fdatasync rate, raw bbolt with the
// batch sizes the group commit actually formed, and a js-libp2p pair that
// persists nothing.
//
// A case that fails reports itself as a row with its error, and the rest of
// the suite goes on.
//
// Files: result.go (rows and statistics), pairs.go (transport pairs and
// their baselines), durable.go and boltmeta*.go (group commit, fdatasync,
// raw bbolt), e2e.go (two nodes), echo.go (the echo workloads), gonodes.go,
// procs.go (daemon and JavaScript processes), daemon_http.go, recovery.go,
// memory.go, scale.go, startup.go, child.go (measurements in a separate
// process), report.go (the table).
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
)

// Options selects what runs and how long.
type Options struct {
	// Quick shrinks every measurement (CI smoke run); figures still come
	// from at least five runs, of a few milliseconds each.
	Quick bool
	// JS runs the js-libp2p pair as the baseline of the echo workloads
	// (needs Node.js 22 and `npm ci --prefix interop/node`; without them
	// its rows say what to install and are skipped).
	JS bool
	// Only, when set, runs only the cases whose name matches.
	Only *regexp.Regexp
	// Runs is the number of runs per figure (default and minimum 5).
	Runs int
	// PeerExe is the ocapnet binary, run as `PeerExe peer --stdio` for the
	// daemon pair. Empty: the daemon rows are skipped.
	PeerExe string
	// ChildExe and ChildArgs start a measurement in a separate process
	// (scale, startup): the command must call RunChild when ChildEnv is
	// set in its environment. Empty ChildExe: those rows are skipped.
	ChildExe  string
	ChildArgs []string
	// NodeJS is the Node.js binary and JSDir the directory of benchpeer.mjs
	// (interop/node); found from the working directory when empty.
	NodeJS, JSDir string
	// Liveness is the liveness interval of the scale and connected-idle
	// memory cases (0: 5 s, 500 ms with Quick); the transport's default is
	// 10 s.
	Liveness time.Duration
	// ChildCPUProfile, when set, makes each child measurement write a CPU
	// profile of its idle rounds to this path with the case's tag appended
	// (FILE.scale-2000, …).
	ChildCPUProfile string
	// Progress, when set, receives a line per case as it starts.
	Progress io.Writer
}

// env is what the cases share.
type env struct {
	o    Options
	tmp  string
	rl   *relay.Server
	add  func(Result)
	runs int
}

func (e *env) say(format string, a ...any) {
	if e.o.Progress != nil {
		fmt.Fprintf(e.o.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
}

// quick picks the quick or the full value.
func (e *env) quick(q, full int) int {
	if e.o.Quick {
		return q
	}
	return full
}

func (e *env) quickDur(q, full time.Duration) time.Duration {
	if e.o.Quick {
		return q
	}
	return full
}

// benchCase is one named group of rows; its rows' names start with name.
type benchCase struct {
	name string
	run  func(ctx context.Context, e *env) error
}

func cases() []benchCase {
	var cs []benchCase
	for _, path := range []string{"tcp", "quic", "relay"} {
		cs = append(cs, benchCase{"transport/" + path, func(ctx context.Context, e *env) error { return transportCase(ctx, e, path) }})
	}
	cs = append(cs,
		benchCase{"durable/fdatasync", fdatasyncCase},
		benchCase{"durable/group-commit", groupCommitCase},
		benchCase{"durable/end-to-end", endToEndCase},
		benchCase{"echo/tcp", func(ctx context.Context, e *env) error { return echoCase(ctx, e, "tcp") }},
		benchCase{"echo/relay", func(ctx context.Context, e *env) error { return echoCase(ctx, e, "relay") }},
		benchCase{"recovery", recoveryCase},
		benchCase{"memory", memoryCase},
	)
	for _, n := range []int{500, 1000, 2000} {
		cs = append(cs, benchCase{fmt.Sprintf("scale/%d", n), func(ctx context.Context, e *env) error { return scaleCase(ctx, e, n) }})
	}
	cs = append(cs, benchCase{"startup/pending-1M", startupCase})
	return cs
}

// CaseNames lists the cases in the order they run.
func CaseNames() []string {
	var out []string
	for _, c := range cases() {
		out = append(out, c.name)
	}
	return out
}

// Run runs the selected cases and returns every row in order; each is also
// passed to emit as soon as it is measured. A failing case becomes a row
// with its error; Run itself fails only when nothing can run at all.
func Run(ctx context.Context, o Options, emit func(Result)) ([]Result, error) {
	return runCases(ctx, o, cases(), emit)
}

func runCases(ctx context.Context, o Options, cs []benchCase, emit func(Result)) ([]Result, error) {
	var out []Result
	add := func(r Result) {
		out = append(out, r)
		if emit != nil {
			emit(r)
		}
	}
	tmp, err := os.MkdirTemp("", "ocapnet-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	rl, err := relay.Start(relay.Options{KeySeed: seed(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return nil, fmt.Errorf("bench relay: %w", err)
	}
	defer rl.Stop()
	e := &env{o: o, tmp: tmp, rl: rl, add: add, runs: max(5, o.Runs)}
	for _, c := range cs {
		if o.Only != nil && !o.Only.MatchString(c.name) {
			continue
		}
		if ctx.Err() != nil {
			add(failed(c.name, ctx.Err()))
			continue
		}
		e.say("%s ...", c.name)
		if err := runCase(ctx, e, c); err != nil {
			var sk *skipError
			if errors.As(err, &sk) {
				add(skipped(c.name, sk.why))
			} else {
				add(failed(c.name, err))
			}
		}
	}
	return out, nil
}

// runCase runs one case, turning a panic into its error.
func runCase(ctx context.Context, e *env, c benchCase) (err error) {
	ctx, cancel := context.WithTimeout(ctx, caseTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
		}
	}()
	return c.run(ctx, e)
}

// caseTimeout bounds one case: its Sends and waits end with the context.
const caseTimeout = 30 * time.Minute

// Errors of the harness.
var (
	// ErrPanic: a case panicked (its row carries the stack).
	ErrPanic = errors.New("benchmark panicked")
	// ErrTimeout: a measurement did not finish in its time bound.
	ErrTimeout = errors.New("benchmark timed out")
	// ErrNoBinary: a case needs a binary that is not there.
	ErrNoBinary = errors.New("binary not available")
)

// skipError is a case that cannot run here, with the reason.
type skipError struct{ why string }

func (s *skipError) Error() string { return "skipped: " + s.why }

func skip(format string, a ...any) error { return &skipError{fmt.Sprintf(format, a...)} }

func seed() identity.Seed {
	s, err := identity.RandomSeed()
	if err != nil {
		panic(err)
	}
	return s
}

// ident gives c a fresh identity.
func ident(c transport.Config) transport.Options {
	return transport.Options{KeySeed: seed(), IncarnationID: identity.NewIncarnationID(), Config: c}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sizeName(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// waitUntil polls cond every step until it holds or d passes.
func waitUntil(d, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step) // setup polling, bounded by d
	}
	return true
}
