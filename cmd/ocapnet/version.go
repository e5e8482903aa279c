package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func init() {
	register("version", command{summary: "print the version of ocapnet and of Go", run: runVersion})
}

// version returns the module version recorded by the Go toolchain: a tag for
// `go install …@vX`, "(devel)" for a build from a checkout.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr, "")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(stdout, "ocapnet %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
