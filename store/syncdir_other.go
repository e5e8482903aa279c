//go:build !unix

package store

// syncDir does nothing where directories cannot be fsync'd (Windows: NTFS
// journals its metadata itself).
func syncDir(string) error { return nil }
