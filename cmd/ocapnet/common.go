package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// defaultDataDir is $OCAPNET_HOME/sub, else $XDG_DATA_HOME/ocapnet/sub, else
// ~/.local/share/ocapnet/sub.
func defaultDataDir(sub string) string {
	if h := os.Getenv("OCAPNET_HOME"); h != "" {
		return filepath.Join(h, sub)
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "ocapnet", sub)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "ocapnet", sub)
	}
	return filepath.Join(home, ".local", "share", "ocapnet", sub)
}

// lineWriter writes one JSON object per line and flushes it at once; it is
// safe for concurrent use.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.w.Write(b) // one unbuffered write per line: nothing waits in a buffer
	return err
}

// newLogger logs text to stderr at the level given by --log-level.
func newLogger(stderr io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
}

// readyLine is the first line every long-running command prints.
type readyLine struct {
	Event  string   `json:"event"`
	PeerID string   `json:"peerId"`
	Addrs  []string `json:"addrs"`
	HTTP   string   `json:"http,omitempty"`
}
