//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// summary is the run's summary line, printed last (after the test
// verdicts) so that runs can be compared at a glance.
var (
	summaryMu sync.Mutex
	summary   string
)

func setSummary(s string) {
	summaryMu.Lock()
	summary = s
	summaryMu.Unlock()
}

func TestMain(m *testing.M) {
	if os.Getenv(delayEnv) != "" {
		os.Exit(delayMain(os.Getenv(delayEnv))) // the delaying proxy, a child of TestChaos
	}
	if os.Getenv(floodEnv) != "" {
		os.Exit(floodMain(os.Getenv(floodEnv))) // the hostile flooder, a child of TestChaos
	}
	code := m.Run()
	summaryMu.Lock()
	if summary != "" {
		fmt.Println(summary)
	}
	summaryMu.Unlock()
	os.Exit(code)
}
