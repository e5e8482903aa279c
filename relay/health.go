package relay

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ocapnet/ocapnet/internal/p2phost"
)

// ErrNotServing is wrapped by every error Health returns.
var ErrNotServing = errors.New("relay not serving")

// Health returns nil while the relay serves: it was not stopped, its relay
// service runs, and every configured listen address is still bound.
// Otherwise the error, wrapping ErrNotServing, says which.
func (s *Server) Health() error {
	select {
	case <-s.stopped:
		return fmt.Errorf("%w: stopped", ErrNotServing)
	default:
	}
	if !s.stats.up.Load() {
		return fmt.Errorf("%w: relay service not running", ErrNotServing)
	}
	if miss := p2phost.NotListening(s.h, s.listen); len(miss) > 0 {
		return fmt.Errorf("%w: not listening on %s", ErrNotServing, strings.Join(miss, ", "))
	}
	return nil
}

// Stats returns the relay's counts.
func (s *Server) Stats() Stats { return s.stats.snapshot() }
