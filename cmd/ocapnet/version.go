package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/ocapnet/ocapnet/daemon"
)

func init() {
	register("version", command{summary: "print the version of ocapnet and of Go", run: runVersion})
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr, "")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintf(stdout, "ocapnet %s %s %s/%s\n", daemon.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
