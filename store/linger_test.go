package store

import (
	"encoding/json"
	"sync"
	"testing"
)

// Closed-loop callers share commits whole: each commit carries about every
// caller, not alternating halves (and with NoLinger, about half).
func TestGroupCommitLingers(t *testing.T) {
	batch := func(noLinger bool) float64 {
		s, err := Open(t.TempDir(), Options{NoLinger: noLinger})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		const callers, each = 32, 40
		var wg sync.WaitGroup
		start := s.Stats()
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if err := s.Update(func(tx *Tx) error {
						_, err := tx.AppendOut("p", OutRecord{Method: "m", Params: json.RawMessage(`[1]`)})
						return err
					}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		end := s.Stats()
		return float64(end.Updates-start.Updates) / float64(end.Commits-start.Commits)
	}
	with, without := batch(false), batch(true)
	t.Logf("32 closed-loop callers: %.1f updates a commit lingering, %.1f without", with, without)
	if with < 24 {
		t.Errorf("%.1f updates a commit with 32 closed-loop callers: the commit does not wait for them", with)
	}
}
