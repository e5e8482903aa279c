//go:build !linux

package bench

// rss is not measured on this platform.
func rss() float64 { return -1 }
