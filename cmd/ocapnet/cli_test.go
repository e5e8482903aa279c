package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Help that was asked for goes to stdout with exit 0, for every command,
// both as `ocapnet help CMD` and `CMD --help`; help after a mistake goes to
// stderr with exit 2.
func TestHelp(t *testing.T) {
	for name := range commands {
		for _, args := range [][]string{{"help", name}, {name, "--help"}, {name, "-h"}, {name, "--data", "x", "-help"}} {
			code, stdout, stderr := runCmd(args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: ocapnet "+name+" ") {
				t.Errorf("%v: exit %d, stdout %.80q, stderr %q", args, code, stdout, stderr)
			}
		}
	}
	code, stdout, _ := runCmd("help", "peer")
	if code != 0 || !strings.Contains(stdout, "OCAPNET_PEER_DATA") || !strings.Contains(stdout, "--api-allow-remote") {
		t.Errorf("peer help does not list the flags with their environment variables:\n%s", stdout)
	}
	if code, _, stderr := runCmd("help", "nope"); code != 2 || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Errorf("help nope: %d %q", code, stderr)
	}
	if code, stdout, stderr := runCmd("peer", "--bogus"); code != 2 || stdout != "" || !strings.Contains(stderr, "usage: ocapnet peer") {
		t.Errorf("bad flag: %d %q %q", code, stdout, stderr)
	}
	for _, v := range []string{"--version", "-version", "-V"} {
		if code, stdout, _ := runCmd(v); code != 0 || !regexp.MustCompile(`^ocapnet \S+.* go1\.`).MatchString(stdout) {
			t.Errorf("%s: %d %q", v, code, stdout)
		}
	}
	if code, stdout, _ := runCmd("--help"); code != 0 || !strings.Contains(stdout, "OCAPNET_<COMMAND>_<FLAG>") {
		t.Errorf("--help: %d %q", code, stdout)
	}
}

// Every flag can come from OCAPNET_<COMMAND>_<FLAG>; the command line wins;
// a bad value names the variable; repeatable flags take a list.
func TestEnvFlags(t *testing.T) {
	t.Setenv("OCAPNET_KEYGEN_SEED", "c8")
	code, stdout, _ := runCmd("keygen")
	if code != 0 || !strings.Contains(stdout, "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc") {
		t.Fatalf("seed from the environment: %d %s", code, stdout)
	}
	if _, stdout, _ := runCmd("keygen", "--seed", strings.Repeat("0", 64)); !strings.Contains(stdout, "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN") {
		t.Fatalf("the command line did not win: %s", stdout)
	}
	t.Setenv("OCAPNET_KEYGEN_SEED", "")
	t.Setenv("OCAPNET_PEER_LIVENESS", "often")
	if code, _, stderr := runCmd("peer", "--data", t.TempDir()); code != 2 || !strings.Contains(stderr, "OCAPNET_PEER_LIVENESS") {
		t.Fatalf("bad duration: %d %q", code, stderr)
	}
	t.Setenv("OCAPNET_PEER_LIVENESS", "")
	t.Setenv("OCAPNET_PEER_LISTEN", "/ip4/127.0.0.1/tcp/0, garbage-address")
	if code, _, stderr := runCmd("peer", "--data", t.TempDir()); code != 1 || !strings.Contains(stderr, "garbage-address") {
		t.Fatalf("list from the environment: %d %q", code, stderr)
	}
	t.Setenv("OCAPNET_PEER_LISTEN", "")
	t.Setenv("OCAPNET_PEER_EVENT_MAX_BYTES", "1KiB")
	if code, _, stderr := runCmd("peer", "--data", t.TempDir(), "--api", "127.0.0.1:0"); code != 1 || !strings.Contains(stderr, "below 64 KiB") {
		t.Fatalf("size from the environment: %d %q", code, stderr)
	}
}

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"65536": 65536, "64KiB": 64 << 10, "16MiB": 16 << 20, "1G": 1 << 30, "2mb": 2 << 20, "-1": -1} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("%s: %d %v", in, s, err)
		}
	}
	var s sizeFlag
	if err := s.Set("lots"); err == nil {
		t.Error("lots accepted")
	}
	if s = sizeFlag(64 << 20); s.String() != "64MiB" {
		t.Error(s.String())
	}
}

// docs/DAEMON.md describes every flag of the peer daemon and its clients,
// with its environment variable.
func TestDocsCoverFlags(t *testing.T) {
	doc, err := os.ReadFile("../../docs/DAEMON.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"peer", "send", "peers", "events", "login"} {
		code, stdout, _ := runCmd(name, "--help")
		if code != 0 {
			t.Fatal(name)
		}
		for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+)`).FindAllStringSubmatch(stdout, -1) {
			if !strings.Contains(string(doc), "`--"+m[1]) {
				t.Errorf("docs/DAEMON.md does not describe ocapnet %s --%s", name, m[1])
			}
		}
	}
	if !strings.Contains(string(doc), "OCAPNET_<COMMAND>_<FLAG>") {
		t.Error("docs/DAEMON.md does not explain the environment variables")
	}
}
