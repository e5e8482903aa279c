package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRelayCommand(t *testing.T) {
	dir := t.TempDir()
	r := startProc(t, "relay", "--data", dir, "--seed", "c8", "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws")
	ready := r.next(t, "ready", 10*time.Second)
	if ready["peerId"] != "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc" {
		t.Fatalf("ready: %v", ready)
	}
	addrs, _ := ready["addrs"].([]any)
	if len(addrs) != 2 || !strings.HasSuffix(addrs[0].(string), "/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc") {
		t.Fatalf("addrs: %v", addrs)
	}
	// A second relay on the same directory fails fast, naming it.
	out, err := exec.Command(ocapnetBinary(t), "relay", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), dir) {
		t.Fatalf("second relay: exit %d: %s", code, out)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	// A different seed for the same directory is refused.
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", dir, "--seed", "c9", "--listen", "/ip4/127.0.0.1/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "different identity") {
		t.Fatalf("other seed: exit %d: %s", code, out)
	}
	// A weak seed on a public address is refused unless --insecure-seed.
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--seed", "c8", "--listen", "/ip4/0.0.0.0/tcp/0").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "--insecure-seed") {
		t.Fatalf("weak seed: exit %d: %s", code, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "relay", "--listen").CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Fatalf("missing flag value: exit %d: %s", code, out)
	}
	out, err = exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--listen", "not-a-multiaddr").CombinedOutput()
	if code := exitCode(err); code != 1 || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		t.Fatalf("bad multiaddr: exit %d: %s", code, out)
	}
}

func TestDemoCommand(t *testing.T) {
	out, err := exec.Command(ocapnetBinary(t), "demo").CombinedOutput()
	if code := exitCode(err); code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, out)
	}
	if !strings.Contains(string(out), "sent: 50  delivered: 50  lost: 0  duplicates: 0  recovered in: ") || !strings.Contains(string(out), "p2p-circuit") {
		t.Fatalf("demo output:\n%s", out)
	}
}

// The kernel demo: a call made while the exporter is down is answered by
// its next process, the old reference and the URL still work.
func TestKernelDemoCommand(t *testing.T) {
	out, err := exec.Command(ocapnetBinary(t), "demo", "--kernel").CombinedOutput()
	if code := exitCode(err); code != 0 {
		t.Fatalf("demo --kernel exit %d:\n%s", code, out)
	}
	for _, want := range []string{`"Hello, caller! (exporter process 1)"`, `"Hello, patient caller! (exporter process 2)"`,
		`"Hello, same reference! (exporter process 2)"`, "the same object: true"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("demo --kernel output lacks %s:\n%s", want, out)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// WSS listener from certificate files, and the metrics/health endpoint.
func TestRelayWSSAndHTTP(t *testing.T) {
	cert, key := writeSelfSigned(t)
	r := startProc(t, "relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0/tls/ws",
		"--wss-cert", cert, "--wss-key", key, "--http", "127.0.0.1:0")
	ready := r.next(t, "ready", 10*time.Second)
	addrs := fmt.Sprint(ready["addrs"])
	if !strings.Contains(addrs, "/tls/") || !strings.Contains(addrs, "/ws/p2p/") {
		t.Fatalf("addrs %s, want a /tls/.../ws address", addrs)
	}
	base := "http://" + ready["http"].(string)
	if code, body := apiGet(t, base+"/healthz", ""); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := apiGet(t, base+"/metrics", ""); code != 200 || !strings.Contains(body, "ocapnet_relay_connected_peers") {
		t.Fatalf("metrics: %d", code)
	}
	out, err := exec.Command(ocapnetBinary(t), "relay", "--data", t.TempDir(), "--wss-cert", cert).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "go together") {
		t.Fatalf("cert without key: %v %s", err, out)
	}
}

// A peer whose relay is unreachable at start keeps running (and retrying).
func TestPeerWithUnreachableRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc", ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	p, _ := startPeerProc(t, dead)
	p.send(t, `{"op":"peers","id":1}`)
	if m := p.next(t, "peers", 5*time.Second); m["id"] != 1.0 {
		t.Fatalf("peers: %v", m)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
