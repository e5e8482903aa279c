package endpoint

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.Libp2pSingletons()...)
}
