package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/transport"
)

// 32 reconnection attempts in 2.5 minutes (what one dead peer produced)
// come out as one event per interval, each with the latest attempt and how
// many reports it stands for; a change of state comes out at once, and the
// time in a state does not restart with every attempt.
func TestPeerWatchCoalesces(t *testing.T) {
	w := newPeerWatch(30*time.Second, slog.New(slog.DiscardHandler))
	id, _ := peer.Decode("12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc")
	t0 := time.Now()
	var out []*peerEvent
	emit := func(ev *peerEvent) {
		if ev != nil {
			out = append(out, ev)
		}
	}
	emit(w.report(transport.PeerInfo{ID: id, State: transport.StateConnected, Since: t0}, t0))
	reports := 0
	for i := 1; i <= 32; i++ {
		now := t0.Add(time.Duration(i) * 150 * time.Second / 32)
		emit(w.report(transport.PeerInfo{ID: id, State: transport.StateReconnecting, Attempt: i, Since: now, LastError: "refused"}, now))
		for _, ev := range w.due(now) {
			emit(ev)
		}
		reports++
	}
	end := t0.Add(150 * time.Second)
	for _, ev := range w.due(end.Add(30 * time.Second)) {
		emit(ev)
	}
	if len(out) > 8 {
		t.Fatalf("%d events for 33 reports", len(out))
	}
	total := 0
	for i, ev := range out[1:] {
		total += max(ev.Reports, 1)
		if ev.State != "reconnecting" || !ev.Since.Equal(out[1].Since) {
			t.Fatalf("event %d: %+v", i+1, ev)
		}
	}
	if total != 32 || out[len(out)-1].Attempt != 32 {
		t.Fatalf("the events stand for %d reports, last attempt %d", total, out[len(out)-1].Attempt)
	}
	if s, _ := w.since(id, "reconnecting"); !s.Equal(t0.Add(150 * time.Second / 32)) {
		t.Fatalf("since %v moved with the attempts", s)
	}
	ev := w.report(transport.PeerInfo{ID: id, State: transport.StateConnected, Since: end}, end)
	if ev == nil || ev.State != "connected" {
		t.Fatalf("a change of state was held back: %v", ev)
	}
	if len(w.due(end.Add(time.Hour))) != 0 {
		t.Fatal("a coalesced event survived a change of state")
	}
	if newPeerWatch(-1, slog.New(slog.DiscardHandler)).report(transport.PeerInfo{ID: id, State: transport.StateIdle}, end) == nil {
		t.Fatal("no coalescing: an event was held")
	}
}

func TestOneLine(t *testing.T) {
	libp2p := "failed to dial 12D3KooW: all dials failed\n  * [/ip4/127.0.0.1/tcp/1] dial tcp4 127.0.0.1:1: connect: connection refused\n  * [/ip4/127.0.0.1/udp/1/quic-v1] timeout: no recent network activity"
	got := oneLine(libp2p)
	if strings.Contains(got, "\n") || !strings.Contains(got, "connection refused") || !strings.HasSuffix(got, "(and 1 more)") {
		t.Fatalf("%q", got)
	}
	if oneLine("") != "" || oneLine("plain") != "plain" {
		t.Fatal("short errors changed")
	}
	if r := []rune(oneLine(strings.Repeat("é", 1000))); len(r) != 240 {
		t.Fatalf("%d runes", len(r))
	}
}

// A dead peer's reconnection attempts reach the event stream coalesced,
// and its trouble is logged at WARN with a one-line error.
func TestDeadPeerEvents(t *testing.T) {
	var logs logBuffer
	o := testOptions(t)
	o.PeerEventInterval, o.Logger = time.Second, logs.logger()
	s, _ := startStdio(t, o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	to := randomPeer(t)
	s.send(fmt.Sprintf(`{"op":"send","id":1,"to":%q,"method":"m","hints":["/ip4/127.0.0.1/tcp/%d/p2p/%s"]}`, to, port, to))
	s.next("sent", 5*time.Second)
	start := time.Now()
	var events []map[string]any
	for time.Since(start) < 3*time.Second {
		m := s.next("peer", 5*time.Second)
		events = append(events, m)
	}
	attempt := events[len(events)-1]["attempt"].(float64)
	if attempt < 8 || float64(len(events)) > attempt/2 {
		t.Fatalf("%d peer events for %v attempts: %v", len(events), attempt, events)
	}
	coalesced := false
	for _, e := range events {
		coalesced = coalesced || e["reports"] != nil
	}
	if !coalesced {
		t.Fatalf("no event says it stands for several reports: %v", events)
	}
	waitLog(t, &logs, `level=WARN msg="cannot reach peer; messages to it wait"`)
	if l := logs.String(); strings.Contains(l[strings.Index(l, "cannot reach peer"):], "\n  *") {
		t.Fatalf("multi-line error in the log:\n%s", l)
	}
	s.send(`{"op":"peers"}`)
	p := s.next("peers", 5*time.Second)["peers"].([]any)[0].(map[string]any)
	since, _ := time.Parse(time.RFC3339Nano, p["since"].(string))
	if time.Since(since) < 2*time.Second || strings.Contains(p["lastErrorLine"].(string), "\n") {
		t.Fatalf("peer status: %v", p)
	}
}
