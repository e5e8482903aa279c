//go:build !ocapnet_nosync

package store

// fsyncOff is the test-only no-fsync switch (build tag ocapnet_nosync); it
// is off in every normal build.
const fsyncOff = false
