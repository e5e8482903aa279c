//go:build ocapnet_nosync

package store

import "testing"

// fsyncOff, set by the build tag ocapnet_nosync, makes the store skip every
// fsync, so that a power-loss test can show it would lose data. Only test
// binaries may be built with it.
const fsyncOff = true

func init() {
	if !testing.Testing() {
		panic("store: the ocapnet_nosync build tag turns off fsync and is for test binaries only")
	}
}
