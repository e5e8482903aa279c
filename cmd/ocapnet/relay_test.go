package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRelayCommand(t *testing.T) {
	dir := t.TempDir()
	r := startProc(t, "relay", "--data", dir, "--seed", "c8", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws")
	ready := r.next(t, "ready", 10*time.Second)
	if ready["peerId"] != "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc" {
		t.Fatalf("ready: %v", ready)
	}
	addrs, _ := ready["addrs"].([]any)
	if len(addrs) != 2 || !strings.HasSuffix(addrs[0].(string), "/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc") {
		t.Fatalf("addrs: %v", addrs)
	}
	// A second relay on the same directory fails fast, naming it.
	out, err := exec.Command(ocapnetBinary(t), "relay", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), dir) {
		t.Fatalf("second relay: exit %d: %s", code, out)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	// A different seed for the same directory is refused.
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", dir, "--seed", "c9", "--listen", "/ip4/127.0.0.1/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "different identity") {
		t.Fatalf("other seed: exit %d: %s", code, out)
	}
	// A weak seed on a public address is refused unless --insecure-seed.
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--seed", "c8", "--listen", "/ip4/0.0.0.0/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "--insecure-seed") {
		t.Fatalf("weak seed: exit %d: %s", code, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "relay", "--listen").CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Fatalf("missing flag value: exit %d: %s", code, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--listen", "not-a-multiaddr").CombinedOutput()
	if code := exitCode(err); code != 1 || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		t.Fatalf("bad multiaddr: exit %d: %s", code, out)
	}
}

func TestDemoCommand(t *testing.T) {
	out, err := exec.Command(ocapnetBinary(t), "demo").CombinedOutput()
	if code := exitCode(err); code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, out)
	}
	if !strings.Contains(string(out), "sent: 50  delivered: 50  lost: 0  duplicates: 0  recovered in: ") || !strings.Contains(string(out), "p2p-circuit") {
		t.Fatalf("demo output:\n%s", out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}
