package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startCPUProfile writes a CPU profile to path until the returned stop is
// called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// startBlockProfile records where goroutines wait (sampling one wait per
// 100 µs of waiting) and writes the profile to path when stop is called.
func startBlockProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	return func() {
		pprof.Lookup("block").WriteTo(f, 0)
		runtime.SetBlockProfileRate(0)
		f.Close()
	}, nil
}
