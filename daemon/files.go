package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TokenFile and AddrFile are written in the data directory: the API's bearer
// token (mode 0600) and its address (a URL), for the thin clients.
const (
	TokenFile = "api-token"
	AddrFile  = "api-addr"
)

// MinTokenLen is the shortest API token accepted from a token file.
const MinTokenLen = 32

// CheckDataDir makes sure dir is a directory only its owner can write to,
// creating it (and missing parents) with mode 0700 if it does not exist. A
// directory that its group or others can write to is refused with
// ErrInsecureDir unless allowInsecure: another local user could replace
// the API token or address file in it. (Windows has no such mode bits; there
// the check only creates the directory.)
func CheckDataDir(dir string, allowInsecure bool) error {
	if dir == "" {
		return fmt.Errorf("%w: no data directory given", ErrInvalidOptions)
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("data directory %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data directory %s: not a directory", dir)
	}
	if mode := fi.Mode().Perm(); mode&0o022 != 0 && !allowInsecure && runtime.GOOS != "windows" {
		return fmt.Errorf("%w: %s has mode %04o; run chmod 700 %s (or pass --allow-insecure-dir)", ErrInsecureDir, dir, mode, dir)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory: write, fsync, rename, fsync of the directory. A crash or a full
// disk leaves either the old file or the new one, never a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // best effort: not every platform can sync a directory
		d.Close()
	}
	return nil
}

// LoadToken returns the API token of a data directory, creating it if
// missing: 32 random bytes (crypto/rand) as hex, written atomically with
// mode 0600. An existing file that is empty, shorter than MinTokenLen,
// unreadable, holds characters that cannot travel in a header, or that
// others can read, is an error naming the file (ErrBadToken).
func LoadToken(dir string) (string, error) { return loadToken(dir, false) }

func loadToken(dir string, allowInsecure bool) (string, error) {
	path := filepath.Join(dir, TokenFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return "", fmt.Errorf("making an API token: %w", err)
		}
		tok := hex.EncodeToString(raw)
		if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("writing the API token %s: %w", path, err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("%w %s: %v", ErrBadToken, path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 && !allowInsecure && runtime.GOOS != "windows" {
		return "", fmt.Errorf("%w %s: mode %04o lets other users read it; run chmod 600 %s (or pass --allow-insecure-dir)",
			ErrBadToken, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w %s: %v", ErrBadToken, path, err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("%w %s: the file is empty (a first start that could not write it?); delete it to have a new token made", ErrBadToken, path)
	case len(tok) < MinTokenLen:
		return "", fmt.Errorf("%w %s: the token has %d characters, at least %d are needed; delete the file to have a new token made",
			ErrBadToken, path, len(tok), MinTokenLen)
	}
	for _, c := range tok {
		if c <= ' ' || c > '~' {
			return "", fmt.Errorf("%w %s: the token holds a character (%q) that cannot travel in an HTTP header", ErrBadToken, path, c)
		}
	}
	return tok, nil
}
