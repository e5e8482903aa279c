package smallcaps

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind (the Node check
// runs a subprocess).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
