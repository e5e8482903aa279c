package interop

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/internal/testutil"
)

// TestMain checks that no test leaves a goroutine behind (beyond libp2p's
// process-wide ones).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.Libp2pSingletons()...) }
