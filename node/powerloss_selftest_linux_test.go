package node

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/ocapnet/ocapnet/internal/lazyfs"
)

var powerSelfTestCycles = flag.Int("powerloss.selftest.cycles", 4, "fault cycles of the no-fsync run in TestPowerLossDetectsMissingFsync")

// TestPowerLossDetectsMissingFsync shows that TestPowerLoss can fail: it
// builds this package's tests with the store's no-fsync switch (build tag
// ocapnet_nosync), runs TestPowerLoss in that binary and expects it to
// fail, reporting lost messages.
func TestPowerLossDetectsMissingFsync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a test binary and spawns processes")
	}
	if storeFsyncOff {
		t.Skip("this is the no-fsync binary itself")
	}
	lazyfs.Require(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv(lazyfs.RequiredEnv) == "1" {
			t.Fatalf("the go command is needed to build the no-fsync test binary: %v", err)
		}
		t.Skipf("the go command is needed to build the no-fsync test binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "node-nosync.test")
	args := []string{"test", "-c", "-tags", "ocapnet_nosync", "-o", bin}
	if raceBuild() {
		args = append(args, "-race") // shares the build cache with this binary's packages
	}
	build := exec.Command(goTool, append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	run := exec.Command(bin, "-test.run=^TestPowerLoss$", "-test.v", "-test.timeout=5m",
		"-powerloss.cycles="+strconv.Itoa(*powerSelfTestCycles))
	run.Env = append(os.Environ(), lazyfs.RequiredEnv+"=1")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the no-fsync TestPowerLoss: %v, want it to fail\n%s", err, out)
	}
	if !regexp.MustCompile(`store does not fsync`).Match(out) {
		t.Fatalf("the no-fsync binary does not report the switch:\n%s", out)
	}
	m := regexp.MustCompile(`powerloss: (.*) lost=(\d+) rolledback=(\d+) problems=(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the no-fsync TestPowerLoss failed without a summary (not a detected loss?):\n%s", out)
	}
	lost, _ := strconv.Atoi(string(m[2]))
	rolledBack, _ := strconv.Atoi(string(m[3]))
	if lost == 0 && rolledBack == 0 {
		t.Fatalf("the no-fsync TestPowerLoss failed but detected no lost message:\n%s", out)
	}
	t.Logf("without fsync, TestPowerLoss detected %d lost messages (Send returned, never delivered), %d rolled back sequence numbers and %s problems (%s)",
		lost, rolledBack, m[4], m[1])
}

// raceBuild reports whether this binary was built with -race.
func raceBuild() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
