//go:build linux

package lazyfs

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role, os.Getenv(childPathEnv)))
	}
	goleak.VerifyTestMain(m)
}
