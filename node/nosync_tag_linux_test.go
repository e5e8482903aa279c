//go:build ocapnet_nosync

package node

// This test binary was built with the store's no-fsync switch.
func init() { storeFsyncOff = true }
