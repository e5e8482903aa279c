package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/relay"
)

// freePort returns a port that was free on 127.0.0.1 for network ("tcp"
// or "udp") a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A second relay on the ports a first one holds refuses to start, naming
// every address, whatever the transport; the first keeps serving.
func TestRelayPortInUse(t *testing.T) {
	tcp, ws, quic, webrtc := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "udp")
	addrs := []string{
		fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", tcp),
		fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/ws", ws),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", quic),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1/webtransport", quic),
		fmt.Sprintf("/ip4/127.0.0.1/udp/%d/webrtc-direct", webrtc),
	}
	args := func(dir string) []string {
		a := []string{"relay", "--data", dir}
		for _, m := range addrs {
			a = append(a, "--listen", m)
		}
		return a
	}
	first := startProc(t, args(t.TempDir())...)
	ready := first.next(t, "ready", 10*time.Second)
	if n := len(ready["addrs"].([]any)); n != len(addrs) {
		t.Fatalf("first relay announces %d addresses: %v", n, ready["addrs"])
	}
	second := startProc(t, args(t.TempDir())...)
	select {
	case l, ok := <-second.lines:
		if ok {
			t.Fatalf("second relay started: %s", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("second relay neither started nor failed within 20 s")
	}
	<-second.done
	out := second.errText()
	if code := second.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("second relay: exit %d:\n%s", code, out)
	}
	for _, m := range addrs {
		if !strings.Contains(out, m+": ") {
			t.Errorf("second relay's error does not name %s:\n%s", m, out)
		}
	}
	if !strings.Contains(out, "address already in use") {
		t.Errorf("no cause in:\n%s", out)
	}
	// The first relay still owns every port: fresh peers all reach it.
	id, _ := peer.Decode(ready["peerId"].(string))
	for i := range 8 {
		h := plainHost(t, nil)
		info, _ := peer.AddrInfoFromString(fmt.Sprintf("%s/p2p/%s", addrs[0], id))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := h.Connect(ctx, *info)
		cancel()
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
	}
	if code := first.stop(t); code != 0 {
		t.Fatalf("first relay exit %d", code)
	}
}

// plainHost is a go-libp2p host with the relay client and key k (random
// when nil), dialling only.
func plainHost(t *testing.T, k crypto.PrivKey) host.Host {
	t.Helper()
	opts := []libp2p.Option{libp2p.NoListenAddrs, libp2p.EnableRelay(), libp2p.DisableMetrics()}
	if k != nil {
		opts = append(opts, libp2p.Identity(k))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// metricValue returns the value of the metric line that starts with name
// (including any labels), or -1.
func metricValue(body, name string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// The allow-list (flag and file) decides who reserves; reservations and
// refusals are in the metrics, ours and go-libp2p's; refusals are logged
// as WARN summaries.
func TestRelayAllowListMetricsAndRefusalLog(t *testing.T) {
	kFlag, idFlag := newKey(t)
	kFile, idFile := newKey(t)
	kOther, _ := newKey(t)
	file := filepath.Join(t.TempDir(), "allow")
	os.WriteFile(file, []byte("# kernels\n\n"+idFile.String()+"  # bob\n"), 0o600)
	r := startProc(t, "relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
		"--allow-peer", idFlag.String(), "--allow-peers-file", file, "--refusal-log-interval", "1s")
	ready := r.next(t, "ready", 10*time.Second)
	info, err := peer.AddrInfoFromString(ready["addrs"].([]any)[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	reserve := func(k crypto.PrivKey) error {
		h := plainHost(t, k)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Connect(ctx, *info); err != nil {
			return err
		}
		_, err := client.Reserve(ctx, h, *info)
		return err
	}
	if err := reserve(kFlag); err != nil {
		t.Fatalf("peer from --allow-peer: %v", err)
	}
	if err := reserve(kFile); err != nil {
		t.Fatalf("peer from --allow-peers-file: %v", err)
	}
	// Refused at once, so that an interval summarises several.
	const refused = 10
	errs := make(chan error, refused)
	for range refused {
		k, _ := newKey(t)
		go func() { errs <- reserve(k) }()
	}
	for range refused {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "PERMISSION_DENIED") {
			t.Fatalf("unlisted peer: %v", err)
		}
	}
	if err := reserve(kOther); err == nil {
		t.Fatal("unlisted peer reserved")
	}
	base := "http://" + ready["http"].(string)
	// The relay counts a refusal just after answering it.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var code int
		if code, body = apiGet(t, base+"/metrics", ""); code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		if metricValue(body, `ocapnet_relay_refusals_total{request="reserve",status="PERMISSION_DENIED"}`) == refused+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		"ocapnet_relay_reservations": 2,
		"ocapnet_relay_circuits":     0,
		"ocapnet_relay_serving":      1,
		`ocapnet_relay_refusals_total{request="reserve",status="PERMISSION_DENIED"}`: refused + 1,
		`libp2p_relaysvc_reservation_rejections_total{reason="permission denied"}`:   refused + 1,
		`libp2p_relaysvc_reservation_request_response_status_total{status="ok"}`:     2,
		"libp2p_relaysvc_status":        1,
		"ocapnet_relay_connected_peers": -2, // present, any value
	} {
		got := metricValue(body, name)
		if (want == -2 && got < 0) || (want != -2 && got != want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if code, body := apiGet(t, base+"/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz %d %q", code, body)
	}
	// One WARN summary (or two, if the refusals straddled an interval)
	// counting the refusals; never a line each.
	deadline = time.Now().Add(5 * time.Second)
	re := regexp.MustCompile(`level=WARN msg="relay refused requests".* reserve.PERMISSION_DENIED=(\d+)`)
	for {
		n, lines := 0, re.FindAllStringSubmatch(r.errText(), -1)
		for _, m := range lines {
			k, _ := strconv.Atoi(m[1])
			n += k
		}
		if n == refused+1 {
			if len(lines) > 3 {
				t.Fatalf("%d summary lines for %d refusals:\n%s", len(lines), n, r.errText())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("summaries count %d refusals, want %d; stderr:\n%s", n, refused+1, r.errText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop(t)

	// Nonsense is refused before the relay starts.
	for _, bad := range [][]string{{"--allow-peer", "not-a-peer"}, {"--allow-peers-file", filepath.Join(t.TempDir(), "missing")},
		{"--max-conns", "10", "--max-reservations", "10"}, {"--max-circuits", "-1"}} {
		out, err := exec.Command(ocapnetBinary(t), append([]string{"relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0"}, bad...)...).CombinedOutput()
		if exitCode(err) != 1 || strings.Contains(string(out), `"ready"`) {
			t.Errorf("%v: exit %d:\n%s", bad, exitCode(err), out)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("# nobody\n"), 0o600)
	out, err := exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--allow-peers-file", empty).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "lists no peer") {
		t.Errorf("empty allow file: exit %d:\n%s", exitCode(err), out)
	}
}

// /healthz is 200 while serving, and 503 with the reason when a listener
// is gone or the relay stopped.
func TestRelayHealthz(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"))
	seed, err := identity.RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := relay.Start(relay.Options{KeySeed: seed, Metrics: reg,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	web := httptest.NewServer(relayHTTP(srv, reg))
	defer web.Close()
	if code, body := apiGet(t, web.URL+"/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("serving: %d %q", code, body)
	}
	for _, a := range srv.Host().Network().ListenAddresses() {
		if strings.HasSuffix(a.String(), "/ws") {
			srv.Host().Network().(*swarm.Swarm).ListenClose(a)
		}
	}
	if code, body := apiGet(t, web.URL+"/healthz", ""); code != 503 || !strings.Contains(body, "not listening on /ip4/127.0.0.1/tcp/0/ws") {
		t.Fatalf("listener closed: %d %q", code, body)
	}
	if _, body := apiGet(t, web.URL+"/metrics", ""); metricValue(body, "ocapnet_relay_serving") != 0 {
		t.Fatalf("ocapnet_relay_serving not 0 with a listener closed")
	}
	srv.Stop()
	if code, body := apiGet(t, web.URL+"/healthz", ""); code != 503 || !strings.Contains(body, "stopped") {
		t.Fatalf("stopped: %d %q", code, body)
	}
	web.CloseClientConnections()
}
