package node

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/internal/lazyfs"
)

var powerCycles = flag.Int("powerloss.cycles", 6, "fault cycles in TestPowerLoss")

// storeFsyncOff is set in test binaries built with the store's no-fsync
// switch (build tag ocapnet_nosync).
var storeFsyncOff = false

type powerProc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ready chan struct{} // closed when the child printed "ready"
}

// TestPowerLoss runs a sending and a receiving node process, each with its
// data directory on its own lazyfs mount, and at random points SIGKILLs one
// or both and cuts the power of their mounts (everything not fsync'd is
// lost), restarts them from what survived, and at the end checks
// docs/DELIVERY.md's guarantee: every message whose Send returned is
// delivered, in order, exactly once except marked redeliveries.
// -powerloss.cycles sets the number of fault cycles. Needs root and FUSE.
func TestPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	lazyfs.Require(t)
	if storeFsyncOff {
		t.Log("this binary's store does not fsync (ocapnet_nosync): the test should fail")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rfs := lazyfs.MountForTest(t, t.TempDir(), t.TempDir())
	sfs := lazyfs.MountForTest(t, t.TempDir(), t.TempDir())
	rdir, sdir := filepath.Join(rfs.Mountpoint(), "data"), filepath.Join(sfs.Mountpoint(), "data")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rseed, sseed := identity.Seed{0xaa, 3}, identity.Seed{0xbb, 4}
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	raddr := fmt.Sprintf("%s/p2p/%s", listen, rseed.PeerID())

	log := newPowerLog()
	var stderr strings.Builder
	var stderrMu sync.Mutex
	boots := 0
	spawn := func(role, dir string, seed identity.Seed, listen, send string) *powerProc {
		boots++
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test, even on a timeout
		cmd.Env = append(os.Environ(), powerRoleEnv+"="+role, powerDirEnv+"="+dir, powerSeedEnv+"="+seed.Hex(),
			powerListenEnv+"="+listen, powerPeerEnv+"="+raddr, powerSendEnv+"="+send, fmt.Sprintf("%s=%d", powerBootEnv, boots))
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
		p := &powerProc{cmd: cmd, done: make(chan struct{}), ready: make(chan struct{})}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); log.read(stdout, role, p.ready) }()
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
	// up waits until p has started its node.
	up := func(p *powerProc) {
		select {
		case <-p.ready:
		case <-p.done:
			stderrMu.Lock()
			defer stderrMu.Unlock()
			t.Fatalf("a child exited before it was ready:\n%s", stderr.String())
		case <-time.After(60 * time.Second):
			t.Fatal("a child was not ready in 60 s")
		}
	}
	kill := func(p *powerProc) {
		if p != nil {
			p.cmd.Process.Kill() // SIGKILL
			<-p.done
		}
	}
	powerCut := func(f *lazyfs.FS) {
		if err := f.PowerCut(); err != nil {
			t.Fatal(err)
		}
	}
	var recv, send *powerProc
	t.Cleanup(func() { kill(recv); kill(send) }) // before the unmounts (cleanups run last first)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 16))
	began := time.Now()
	var kills, cuts int
	var deck []int // the fault kinds, shuffled: every 5 cycles have each kind once
	for c := 0; c < *powerCycles; c++ {
		if recv == nil {
			recv = spawn("receiver", rdir, rseed, listen, "")
			up(recv)
		}
		if send == nil {
			send = spawn("sender", sdir, sseed, "/ip4/127.0.0.1/tcp/0", "1")
			up(send)
		}
		time.Sleep(time.Duration(150+rng.IntN(450)) * time.Millisecond) // chaos schedule: when to strike
		if len(deck) == 0 {
			deck = rng.Perm(5)
		}
		kind := deck[0]
		deck = deck[1:]
		switch kind {
		case 0: // the receiver's machine loses power
			kill(recv)
			powerCut(rfs)
			recv = nil
			cuts++
		case 1: // the sender's
			kill(send)
			powerCut(sfs)
			send = nil
			cuts++
		case 2: // both (a shared power failure)
			kill(recv)
			kill(send)
			powerCut(rfs)
			powerCut(sfs)
			recv, send = nil, nil
			cuts += 2
		case 3: // a plain crash of one, no power loss
			kill(recv)
			recv = nil
		default:
			kill(send)
			send = nil
		}
		kills++
	}
	kill(send)
	kill(recv)
	send, recv = nil, nil
	log.mu.Lock()
	sentBeforeFinish := log.maxSent
	log.mu.Unlock()

	// Finish: both up, no new sends, until the sender has nothing in flight.
	recv = spawn("receiver", rdir, rseed, listen, "")
	send = spawn("sender", sdir, sseed, "/ip4/127.0.0.1/tcp/0", "0")
	deadline := time.Now().Add(60 * time.Second)
	for {
		log.mu.Lock()
		done := log.finished && log.top >= log.acked
		log.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	kill(send)
	kill(recv)
	send, recv = nil, nil

	log.mu.Lock()
	defer log.mu.Unlock()
	lost := log.lost()
	for i, p := range log.problems {
		if i == 20 {
			t.Errorf("... and %d more problems", len(log.problems)-i)
			break
		}
		t.Error(p)
	}
	if !log.finished {
		stderrMu.Lock()
		t.Errorf("the sender did not finish in 60 s (delivered up to %d, sent up to %d)\nchildren's stderr:\n%s", log.top, log.maxSent, stderr.String())
		stderrMu.Unlock()
	}
	if lost > 0 {
		t.Errorf("%d messages whose Send returned were never delivered", lost)
	}
	if log.top < log.maxSent || log.acked < log.maxSent {
		t.Errorf("delivered up to %d, acked %d, but Send returned for up to %d", log.top, log.acked, log.maxSent)
	}
	if sentBeforeFinish < uint64(*powerCycles) && !storeFsyncOff {
		t.Errorf("only %d messages sent in %d cycles: the test did not exercise much", sentBeforeFinish, *powerCycles)
	}
	// The self-test (TestPowerLossDetectsMissingFsync) reads this line.
	t.Logf("powerloss: cycles=%d kills=%d cuts=%d seconds=%.1f sent=%d delivered=%d redeliveries=%d lost=%d rolledback=%d problems=%d seed=%d",
		*powerCycles, kills, cuts, time.Since(began).Seconds(), len(log.sent), len(log.delivered), log.redeliv, lost, log.rolledBack, len(log.problems), seed)
}
