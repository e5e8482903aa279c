//go:build linux

package bench

import (
	"bytes"
	"os"
	"strconv"
)

// rss is the process's resident set size in bytes (/proc/self/statm).
func rss() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseFloat(string(f[1]), 64)
	if err != nil {
		return -1
	}
	return pages * float64(os.Getpagesize())
}
