package relay

import (
	"log/slog"
	"slices"
	"time"
)

// logRefusals writes, every interval in which requests were refused, one
// WARN line with the counts by request and status, never one per
// refusal, and a last one for what is left when the relay stops.
func (s *Server) logRefusals(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	last := map[Refusal]int64{}
	for {
		select {
		case <-s.stopped:
			s.summarise(last, every)
			return
		case <-t.C:
			last = s.summarise(last, every)
		}
	}
}

// summarise logs the refusals since last and returns the current counts.
func (s *Server) summarise(last map[Refusal]int64, every time.Duration) map[Refusal]int64 {
	cur := s.stats.snapshot().Refusals
	var keys []Refusal
	total := int64(0)
	for k, n := range cur {
		if d := n - last[k]; d > 0 {
			keys = append(keys, k)
			total += d
		}
	}
	if total == 0 {
		return cur
	}
	slices.SortFunc(keys, func(a, b Refusal) int {
		if a.Request != b.Request {
			return compare(a.Request, b.Request)
		}
		return compare(a.Status, b.Status)
	})
	attrs := []any{"refused", total, "interval", every}
	for _, k := range keys {
		attrs = append(attrs, slog.Int64(k.Request+"."+k.Status, cur[k]-last[k]))
	}
	s.log.Warn("relay refused requests", attrs...)
	return cur
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
