//go:build !unix

package p2phost

// openFileLimit is unknown here: 0.
func openFileLimit() int { return 0 }
