package node

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/transport"
)

var crashCycles = flag.Int("crash.cycles", 20, "kill/restart cycles in TestCrashSafety")

const (
	crashRoleEnv   = "OCAPNET_CRASH_ROLE"
	crashDirEnv    = "OCAPNET_CRASH_DIR"
	crashSeedEnv   = "OCAPNET_CRASH_SEED"
	crashListenEnv = "OCAPNET_CRASH_LISTEN"
	crashPeerEnv   = "OCAPNET_CRASH_PEER"
	crashSendEnv   = "OCAPNET_CRASH_SEND" // "1": keep sending; else only finish
)

// crashChild runs one side of TestCrashSafety in a child process. The
// sender sends a numbered stream ([seq] as params) and prints "sent SEQ"
// after each Send returned; the receiver prints "recv SEQ PARAMS R" for every
// delivery (R = 1 for a redelivery). Both run until killed.
func crashChild(role string) int {
	opts := Options{
		Dir:        os.Getenv(crashDirEnv),
		KeySeed:    os.Getenv(crashSeedEnv),
		AckTimeout: time.Second,
		Transport: transport.Config{
			ListenAddrs:        []string{os.Getenv(crashListenEnv)},
			ReconnectBaseDelay: 10 * time.Millisecond,
			ReconnectMaxDelay:  100 * time.Millisecond,
			LivenessInterval:   -1,
			WakeInterval:       -1,
		},
	}
	var out sync.Mutex
	h := Handler{OnMessage: func(m Message) error {
		r := 0
		if m.Redelivery {
			r = 1
		}
		out.Lock()
		defer out.Unlock()
		_, err := fmt.Fprintf(os.Stdout, "recv %d %s %d\n", m.Seq, m.Params, r)
		return err
	}}
	n, err := Start(context.Background(), opts, h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 3
	}
	fmt.Fprintln(os.Stdout, "ready")
	if role == "receiver" {
		for {
			time.Sleep(time.Hour) // until killed
		}
	}
	to, err := peer.AddrInfoFromString(os.Getenv(crashPeerEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 3
	}
	st, _, err := n.Peer(to.ID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 3
	}
	next := st.NextSeq
	for os.Getenv(crashSendEnv) == "1" {
		next++
		seq, err := n.Send(context.Background(), to.ID, "m", fmt.Appendf(nil, "[%d]", next), os.Getenv(crashPeerEnv))
		if err != nil || seq != next {
			fmt.Fprintln(os.Stderr, "send:", seq, next, err)
			return 3
		}
		fmt.Fprintf(os.Stdout, "sent %d\n", seq)
	}
	// Finishing: report when everything is acknowledged.
	n.Reconnect(to.ID, os.Getenv(crashPeerEnv))
	for {
		if ps, ok, _ := n.Peer(to.ID); ok && ps.Unacked == 0 {
			fmt.Fprintf(os.Stdout, "acked %d\n", ps.Acked)
			for {
				time.Sleep(time.Hour) // until killed
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the node's own state
	}
}

// crashLog collects what the children printed.
type crashLog struct {
	mu       sync.Mutex
	maxSent  uint64
	top      uint64 // highest seq delivered
	redeliv  int
	problems []string
	acked    uint64
	ready    chan struct{}
}

func (l *crashLog) read(r io.Reader, role string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		l.mu.Lock()
		switch {
		case len(f) == 1 && f[0] == "ready":
			select {
			case l.ready <- struct{}{}:
			default:
			}
		case len(f) == 2 && f[0] == "sent":
			s, _ := strconv.ParseUint(f[1], 10, 64)
			l.maxSent = max(l.maxSent, s)
		case len(f) == 2 && f[0] == "acked":
			s, _ := strconv.ParseUint(f[1], 10, 64)
			l.acked = s
		case len(f) == 4 && f[0] == "recv":
			s, _ := strconv.ParseUint(f[1], 10, 64)
			redelivery := f[3] == "1"
			if f[2] != "["+f[1]+"]" {
				l.problems = append(l.problems, fmt.Sprintf("seq %s carried %s", f[1], f[2]))
			}
			switch {
			case s == l.top+1:
				l.top = s
				if redelivery {
					l.redeliv++
				}
			case s <= l.top && redelivery:
				l.redeliv++
			case s <= l.top:
				l.problems = append(l.problems, fmt.Sprintf("duplicate %d not marked as a redelivery (top %d)", s, l.top))
			default:
				l.problems = append(l.problems, fmt.Sprintf("gap: got %d after %d", s, l.top))
			}
		default:
			l.problems = append(l.problems, fmt.Sprintf("%s printed %q", role, sc.Text()))
		}
		l.mu.Unlock()
	}
}

type crashProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// TestCrashSafety kills a sending and a receiving node process with SIGKILL
// at random points and restarts them from their directories: every message
// whose Send returned is delivered, in order, with repeats only where marked
// as redeliveries. -crash.cycles sets the number of kill/restart cycles.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rseed, sseed := identity.Seed{0xaa, 1}, identity.Seed{0xbb, 2}
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	raddr := fmt.Sprintf("%s/p2p/%s", listen, rseed.PeerID())
	rdir, sdir := t.TempDir(), t.TempDir()
	log := &crashLog{ready: make(chan struct{}, 4)}
	var stderr strings.Builder
	var stderrMu sync.Mutex

	spawn := func(role, dir string, seed identity.Seed, listen, send string) *crashProc {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashRoleEnv+"="+role, crashDirEnv+"="+dir, crashSeedEnv+"="+seed.Hex(),
			crashListenEnv+"="+listen, crashPeerEnv+"="+raddr, crashSendEnv+"="+send)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		errPipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &crashProc{cmd: cmd, done: make(chan struct{})}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); log.read(stdout, role) }()
		go func() {
			defer wg.Done()
			b, _ := io.ReadAll(errPipe)
			stderrMu.Lock()
			stderr.Write(b)
			stderrMu.Unlock()
		}()
		go func() { wg.Wait(); cmd.Wait(); close(p.done) }()
		return p
	}
	kill := func(p *crashProc) {
		if p == nil {
			return
		}
		p.cmd.Process.Kill() // SIGKILL on Unix
		<-p.done
	}
	var recv, send *crashProc
	t.Cleanup(func() { kill(recv); kill(send) })

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	began := time.Now()
	kills := 0
	for c := 0; c < *crashCycles; c++ {
		if recv == nil {
			recv = spawn("receiver", rdir, rseed, listen, "")
		}
		if send == nil {
			send = spawn("sender", sdir, sseed, "/ip4/127.0.0.1/tcp/0", "1")
		}
		time.Sleep(time.Duration(150+rng.IntN(450)) * time.Millisecond) // chaos schedule: when to kill
		switch rng.IntN(3) {
		case 0:
			kill(recv)
			recv = nil
		case 1:
			kill(send)
			send = nil
		default:
			kill(recv)
			kill(send)
			recv, send = nil, nil
		}
		kills++
	}
	kill(send)
	kill(recv)
	log.mu.Lock()
	sentBeforeFinish := log.maxSent
	log.mu.Unlock()

	// Finish: both up, no new sends, until everything is acknowledged.
	recv = spawn("receiver", rdir, rseed, listen, "")
	send = spawn("sender", sdir, sseed, "/ip4/127.0.0.1/tcp/0", "0")
	deadline := time.Now().Add(60 * time.Second)
	for {
		log.mu.Lock()
		done := log.acked > 0 && log.top >= log.acked
		log.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			stderrMu.Lock()
			t.Fatalf("not finished in 60 s: %+v\nchildren's stderr:\n%s", log, stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, p := range log.problems {
		t.Error(p)
	}
	if log.top < sentBeforeFinish || log.acked < sentBeforeFinish {
		t.Errorf("delivered up to %d, acked %d, but Send returned for up to %d", log.top, log.acked, sentBeforeFinish)
	}
	if sentBeforeFinish < uint64(*crashCycles) {
		t.Errorf("only %d messages sent in %d cycles: the test did not exercise much", sentBeforeFinish, *crashCycles)
	}
	t.Logf("%d kill/restart cycles (%d SIGKILL rounds) in %v: %d messages sent, %d delivered in order, %d redeliveries (all marked)",
		*crashCycles, kills, time.Since(began).Round(time.Millisecond), sentBeforeFinish, log.top, log.redeliv)
}
