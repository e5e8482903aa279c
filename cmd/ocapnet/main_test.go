package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestKeygen(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		peerID   string
		keySeed  string
		stderrRe string
	}{
		{name: "seed c8", args: []string{"keygen", "--seed", "c8"}, peerID: "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc",
			keySeed: "c8" + strings.Repeat("0", 62), stderrRe: "warning: .*2 of 64"},
		{name: "mnemonic", args: []string{"keygen", "--mnemonic", "legal winner thank year wave sausage worth useful legal winner thank yellow"},
			peerID: "12D3KooWPCyWnZCXR3VGdrQjLr5d8TBaAHD956XZvo6xoCXYB5AR", keySeed: "878386efb78845b3355bd15ea4d39ef97d179cb712b77d5c12b6be415fffeffe"},
		{name: "full seed no warning", args: []string{"keygen", "-seed", strings.Repeat("0", 64)}, peerID: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN", keySeed: strings.Repeat("0", 64)},
		{name: "bad seed", args: []string{"keygen", "--seed", "xyz"}, code: 1, stderrRe: "invalid key seed"},
		{name: "bad mnemonic", args: []string{"keygen", "--mnemonic", "hello world"}, code: 1, stderrRe: "invalid BIP39 mnemonic"},
		{name: "both", args: []string{"keygen", "--seed", "01", "--mnemonic", "x"}, code: 2, stderrRe: "mutually exclusive"},
		{name: "unknown flag", args: []string{"keygen", "--bogus"}, code: 2, stderrRe: "usage: ocapnet keygen"},
		{name: "stray argument", args: []string{"keygen", "extra"}, code: 2, stderrRe: "unexpected argument"},
		{name: "help", args: []string{"keygen", "-h"}, code: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(tt.args...)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if tt.stderrRe != "" && !regexp.MustCompile(tt.stderrRe).MatchString(stderr) {
				t.Errorf("stderr %q does not match %q", stderr, tt.stderrRe)
			}
			if tt.stderrRe == "" && stderr != "" {
				t.Errorf("unexpected stderr %q", stderr)
			}
			if tt.code != 0 || tt.peerID == "" {
				if tt.code != 0 && stdout != "" {
					t.Errorf("stdout %q on failure", stdout)
				}
				return
			}
			checkKeygenLine(t, stdout, tt.peerID, tt.keySeed)
		})
	}
}

func checkKeygenLine(t *testing.T, stdout, peerID, keySeed string) {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("stdout %q is not exactly one line", stdout)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got) != 2 {
		t.Fatalf("stdout %q is not {peerId, keySeed}: %v", stdout, err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got["keySeed"]) {
		t.Errorf("keySeed %q is not 64 lower-case hex digits", got["keySeed"])
	}
	if peerID != "" && got["peerId"] != peerID {
		t.Errorf("peerId = %s, want %s", got["peerId"], peerID)
	}
	if keySeed != "" && got["keySeed"] != keySeed {
		t.Errorf("keySeed = %s, want %s", got["keySeed"], keySeed)
	}
}

func TestKeygenRandom(t *testing.T) {
	code, a, _ := runCmd("keygen")
	code2, b, _ := runCmd("keygen")
	if code != 0 || code2 != 0 || a == b {
		t.Fatalf("random keygen: codes %d %d, outputs equal: %v", code, code2, a == b)
	}
	checkKeygenLine(t, a, "", "")
	// The printed seed must reproduce the printed peer ID.
	var first map[string]string
	_ = json.Unmarshal([]byte(a), &first)
	_, again, _ := runCmd("keygen", "--seed", first["keySeed"])
	if again != a {
		t.Errorf("keygen --seed <printed seed> = %q, want %q", again, a)
	}
}

func TestDispatch(t *testing.T) {
	if code, _, stderr := runCmd(); code != 2 || !strings.Contains(stderr, "usage: ocapnet") {
		t.Errorf("no command: code %d stderr %q", code, stderr)
	}
	if code, _, stderr := runCmd("frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: code %d stderr %q", code, stderr)
	}
	if code, stdout, _ := runCmd("help"); code != 0 || !strings.Contains(stdout, "keygen") || !strings.Contains(stdout, "version") {
		t.Errorf("help: code %d stdout %q", code, stdout)
	}
	if code, stdout, _ := runCmd("version"); code != 0 || !strings.HasPrefix(stdout, "ocapnet ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: code %d stdout %q", code, stdout)
	}
	if code, _, _ := runCmd("version", "--x"); code != 2 {
		t.Errorf("version --x: code %d, want 2", code)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ocapnetBinary builds the binary once per test run and returns its path.
func ocapnetBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ocapnet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ocapnet")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building ocapnet: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// asCommandEnv, set to 1, makes this test binary run as the ocapnet command
// itself (its arguments are the command's): the chaos suite's no-fsync
// self-test runs peers from a test binary built with the store's
// ocapnet_nosync tag, which only test binaries may carry.
const asCommandEnv = "OCAPNET_TEST_AS_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(asCommandEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestKeygenSubprocess(t *testing.T) {
	bin := ocapnetBinary(t)
	cmd := exec.Command(bin, "keygen", "--seed", "c8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ocapnet keygen: %v (%s)", err, stderr.String())
	}
	checkKeygenLine(t, string(out), "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc", "c8"+strings.Repeat("0", 62))
	cmd = exec.Command(bin, "keygen", "--nope")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("bad flag exit = %v, want 2", err)
	}
}
