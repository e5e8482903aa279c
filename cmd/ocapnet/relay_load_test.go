package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// loadConfig is one relay load run: reservations client hosts, perIP of
// them on each loopback address 127.10.x.y, and circuits concurrent
// circuits between pairs of them, each carrying frames echoed frames.
type loadConfig struct {
	reservations, perIP, circuits, frames int
	workers                               int // hosts set up at once
	dialers                               int // circuits dialled at once
}

// The default run's load: small, so that it stays fast. The scale test
// (relay_scale_test.go, -tags scale) runs 5,000 and 1,000.
func TestRelayLoad(t *testing.T) {
	relayLoad(t, loadConfig{reservations: 50, perIP: 5, circuits: 20, frames: 3, workers: 16, dialers: 8})
}

// sourceIP is the loopback address of client i: perIP clients share one.
func sourceIP(i, perIP int) net.IP {
	n := i / perIP
	return net.IPv4(127, 10+byte(n/62500), byte(n/250%250), byte(n%250+1))
}

// loadHost is a lightweight go-libp2p client: TCP only, dialling from ip,
// no listeners, no resource or connection manager, no metrics, no ping.
func loadHost(ip net.IP) (host.Host, error) {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	return libp2p.New(
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport(),
			tcp.WithDialerForAddr(func(ma.Multiaddr) (tcp.ContextDialer, error) { return dialer, nil })),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.ConnectionManager(&connmgr.NullConnMgr{}),
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
		libp2p.EnableRelay(),
		// These hosts stand in for kernels on other machines: a loaded test
		// machine must not fail their handshakes at the swarm's 5 s timeout
		// for local addresses.
		libp2p.SwarmOpts(swarm.WithDialTimeout(60*time.Second), swarm.WithDialTimeoutLocal(60*time.Second)),
	)
}

// procStat reads a process's resident set (now and peak) and CPU time.
func procStat(pid int) (rss, peak int64, cpu time.Duration) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				if f[0] == "VmRSS:" {
					rss = kb << 10
				} else {
					peak = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
		}
	}
	return rss, peak, cpu
}

// relayMetricLines are the relay's own and its resource manager's metric
// lines, for a failure report.
func relayMetricLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "ocapnet_relay_") || strings.HasPrefix(l, "libp2p_rcmgr_blocked") || strings.HasPrefix(l, "libp2p_relaysvc_connection") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the
// first error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// relayLoad runs one relay process and c.reservations client hosts that
// reserve on it, then c.circuits concurrent circuits between pairs of them,
// and checks the relay's metrics count them. It logs the figures.
func relayLoad(t *testing.T, c loadConfig) {
	if 2*c.circuits > c.reservations {
		t.Fatalf("%d circuits need %d clients", c.circuits, 2*c.circuits)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max // the relay process inherits it
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if need := uint64(c.reservations + 256); lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE %d is below the %d this load needs", lim.Cur, need)
	}
	r := startProc(t, "relay", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
		"--log-level", "warn", "--refusal-log-interval", "1h",
		"--max-reservations", strconv.Itoa(c.reservations), "--max-reservations-per-ip", strconv.Itoa(c.perIP),
		"--max-circuits-total", strconv.Itoa(c.circuits), "--max-circuits", "4")
	ready := r.next(t, "ready", 10*time.Second)
	info, err := peer.AddrInfoFromString(ready["addrs"].([]any)[0].(string))
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		code, body := apiGet(t, "http://"+ready["http"].(string)+"/metrics", "")
		if code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		return body
	}
	pid := r.cmd.Process.Pid

	// Reservations.
	start := time.Now()
	hosts := make([]host.Host, c.reservations)
	t.Cleanup(func() {
		parallel(len(hosts), c.workers, func(i int) error {
			if hosts[i] != nil {
				hosts[i].Close()
			}
			return nil
		})
	})
	err = parallel(c.reservations, c.workers, func(i int) error {
		h, err := loadHost(sourceIP(i, c.perIP))
		if err != nil {
			return err
		}
		hosts[i] = h
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := h.Connect(ctx, *info); err != nil {
			return fmt.Errorf("client %d: connect: %w", i, err)
		}
		if _, err := client.Reserve(ctx, h, *info); err != nil {
			return fmt.Errorf("client %d: reserve: %w", i, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reserveTime := time.Since(start)
	m := metrics()
	if got := metricValue(m, "ocapnet_relay_reservations"); got != float64(c.reservations) {
		t.Fatalf("ocapnet_relay_reservations %v, want %d", got, c.reservations)
	}
	rssR, _, cpuR := procStat(pid)
	heapR := metricValue(m, "go_memstats_heap_inuse_bytes")

	// One more client on the first, full, address is refused and counted.
	extra, err := loadHost(sourceIP(0, c.perIP))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := extra.Connect(ctx, *info); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, extra, *info); err == nil || !strings.Contains(err.Error(), "RESERVATION_REFUSED") {
		t.Fatalf("reservation over the per-IP limit: %v", err)
	}

	// Circuits: clients 2k+1 dial clients 2k, all open at once.
	const proto = "/ocapnet-load/echo/1"
	for k := range c.circuits {
		hosts[2*k].SetStreamHandler(proto, func(s network.Stream) { io.Copy(s, s); s.Close() })
	}
	frame := make([]byte, 64)
	exchange := func(s network.Stream) error {
		got := make([]byte, len(frame))
		for range c.frames {
			if _, err := s.Write(frame); err != nil {
				return err
			}
			if _, err := io.ReadFull(s, got); err != nil {
				return err
			}
		}
		return nil
	}
	start = time.Now()
	var opened, release sync.WaitGroup
	opened.Add(c.circuits)
	release.Add(1)
	errs := make(chan error, c.circuits)
	circ := ma.StringCast(info.Addrs[0].String() + "/p2p/" + info.ID.String() + "/p2p-circuit")
	var circuitsWG sync.WaitGroup
	sem := make(chan struct{}, c.dialers)
	for k := range c.circuits {
		circuitsWG.Add(1)
		go func() {
			defer circuitsWG.Done()
			src, dst := hosts[2*k+1], hosts[2*k].ID()
			s, err := func() (network.Stream, error) {
				sem <- struct{}{}
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := src.Connect(ctx, peer.AddrInfo{ID: dst, Addrs: []ma.Multiaddr{circ}}); err != nil {
					return nil, err
				}
				s, err := src.NewStream(ctx, dst, proto)
				if err != nil {
					return nil, err
				}
				return s, exchange(s)
			}()
			opened.Done()
			if err != nil {
				errs <- fmt.Errorf("circuit %d: %w", k, err)
				return
			}
			release.Wait()
			if err := exchange(s); err != nil {
				errs <- fmt.Errorf("circuit %d after all opened: %w", k, err)
			}
			s.Close()
			src.Network().ClosePeer(dst)
		}()
	}
	opened.Wait()
	openTime := time.Since(start)
	select {
	case err := <-errs:
		t.Logf("relay metrics at the failure:\n%s", relayMetricLines(metrics()))
		release.Done()
		circuitsWG.Wait()
		t.Fatal(err)
	default:
	}
	m = metrics()
	if got := metricValue(m, "ocapnet_relay_circuits"); got != float64(c.circuits) {
		release.Done()
		circuitsWG.Wait()
		t.Fatalf("ocapnet_relay_circuits %v with all open, want %d", got, c.circuits)
	}
	rssC, peakC, cpuC := procStat(pid)
	heapC := metricValue(m, "go_memstats_heap_inuse_bytes")
	release.Done()
	circuitsWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(metrics(), "ocapnet_relay_circuits") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("circuits still open 30 s after closing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m = metrics() // the refusal was counted long ago (the relay counts just after answering)
	if got := metricValue(m, `ocapnet_relay_refusals_total{request="reserve",status="RESERVATION_REFUSED"}`); got != 1 {
		t.Fatalf("refusals %v, want 1", got)
	}
	if got := metricValue(m, "ocapnet_relay_relayed_bytes_total"); got < float64(4*c.circuits*c.frames*len(frame)) {
		t.Fatalf("relayed bytes %v", got)
	}
	t.Logf("relay load: %d reservations from %d addresses in %v; %d circuits all open after %v, %d×%d-byte frames echoed each way twice; total %v",
		c.reservations, (c.reservations+c.perIP-1)/c.perIP, reserveTime.Round(time.Millisecond), c.circuits,
		openTime.Round(time.Millisecond), c.frames, len(frame), time.Since(start.Add(-reserveTime)).Round(time.Millisecond))
	t.Logf("relay process: with reservations RSS %d MiB, heap in use %.0f MiB, CPU %v; with circuits open RSS %d MiB (peak %d MiB), heap in use %.0f MiB, CPU %v",
		rssR>>20, heapR/(1<<20), cpuR.Round(10*time.Millisecond), rssC>>20, peakC>>20, heapC/(1<<20), cpuC.Round(10*time.Millisecond))
}
