package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, long, err := readLine(br, 50)
		if long {
			got = append(got, "LONG")
		} else if len(line) > 0 {
			got = append(got, strings.TrimSpace(string(line)))
		}
		if err != nil {
			break
		}
	}
	if strings.Join(got, ",") != "short,LONG,last" {
		t.Fatalf("got %v", got)
	}
}

func TestCheckAPIAddr(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:80": false, "10.0.0.1:80": false, "nope": false} {
		if err := checkAPIAddr(addr, false); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := checkAPIAddr("0.0.0.0:80", true); err != nil {
		t.Error(err)
	}
}

// In-process stdio round: the ready line comes first, requests are
// answered, bad lines get errors, and Stop leaves no goroutine behind.
func TestStdioInProcess(t *testing.T) {
	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	d, err := Start(context.Background(), Options{
		Node: node.Options{Dir: t.TempDir(), Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, WakeInterval: -1}},
		Out:  outW,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			json.Unmarshal(sc.Bytes(), &m)
			lines <- m
		}
		close(lines)
	}()
	go d.WriteReady(outW)
	served := make(chan error, 1)
	go func() { served <- d.ServeStdio(context.Background(), inR) }()
	next := func() map[string]any {
		select {
		case m := <-lines:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no output line")
			return nil
		}
	}
	if m := next(); m["event"] != "ready" {
		t.Fatalf("first line %v", m)
	}
	io.WriteString(inW, `{"op":"peers","id":{"a":1}}`+"\n"+`nonsense`+"\n")
	if m := next(); m["event"] != "peers" || m["id"].(map[string]any)["a"] != 1.0 {
		t.Fatalf("peers: %v", m)
	}
	if m := next(); m["event"] != "error" || !strings.Contains(m["error"].(string), "malformed") {
		t.Fatalf("error: %v", m)
	}
	inW.Close()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	for range lines {
	}
}
