//go:build chaos

package chaos

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/ocapnet/ocapnet/wire"
)

// floodEnv carries a flood's orders to the helper process (JSON).
const floodEnv = "OCAPNET_CHAOS_FLOOD"

type floodOrders struct {
	Targets     []string `json:"targets"` // multiaddrs ending in /p2p/ID
	Identities  int      `json:"identities"`
	Concurrency int      `json:"concurrency"`
}

// flood runs the hostile flooder in its own namespace: the test binary
// itself, started as TestFloodHelper, aimed at every peer under test.
func (e *faultEnv) flood() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	o := floodOrders{Identities: e.spec.flood, Concurrency: 16}
	for _, p := range e.peers {
		o.Targets = append(o.Targets, fmt.Sprintf("/ip4/%s/tcp/4001/p2p/%s", p.ip, p.id()))
	}
	b, _ := json.Marshal(o)
	cmd := inNS(e.floodNS, exe)
	cmd.Env = append(os.Environ(), floodEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return err
	}
	e.children.Store(cmd, true) // killed by the run's cleanup if the test ends first
	err = cmd.Wait()
	e.children.Delete(cmd)
	out := []byte(buf.String())
	os.WriteFile(fmt.Sprintf("%s/flood-%d.log", e.dir, time.Now().UnixNano()), out, 0o600)
	if err != nil {
		return fmt.Errorf("flood helper: %v\n%s", err, tail(out, 2000))
	}
	m := regexp.MustCompile(`flood: identities (\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("flood helper printed no summary:\n%s", tail(out, 2000))
	}
	e.t.Logf("%s", regexp.MustCompile(`flood: [^\n]*`).Find(out))
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// floodMain is the hostile flooder, the test binary run by the chaos test
// as a child process in its own namespace (TestMain). Each of many
// throwaway identities connects to a peer under test and does one of:
// a complete libp2p handshake and nothing more; a handshake, then an
// ocap-kernel stream with malformed frames (garbage, an oversized length
// prefix, a truncated frame); a slow handshake (a raw TCP connection that
// trickles bytes and stalls).
func floodMain(raw string) int {
	var o floodOrders
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var targets []peer.AddrInfo
	for _, s := range o.Targets {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		targets = append(targets, *ai)
	}
	var handshakes, malformed, slow, failed atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				target := targets[i%len(targets)]
				var err error
				switch i % 8 {
				case 0, 1, 2, 3, 4:
					err = floodHandshake(target, false)
					if err == nil {
						handshakes.Add(1)
					}
				case 5, 6:
					err = floodHandshake(target, true)
					if err == nil {
						malformed.Add(1)
					}
				case 7:
					err = slowHandshake(target)
					if err == nil {
						slow.Add(1)
					}
				}
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for i := range o.Identities {
		if time.Since(start) > 30*time.Second {
			break // a flood is bounded in time on a slow machine
		}
		work <- i
	}
	close(work)
	wg.Wait()
	fmt.Printf("flood: identities %d, handshakes %d, malformed-frame streams %d, slow handshakes %d, refused or failed %d, in %v\n",
		o.Identities, handshakes.Load(), malformed.Load(), slow.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	return 0
}

// floodHandshake connects with a fresh identity (noise, yamux); with
// garbage it then opens the ocap-kernel protocol and writes malformed
// frames.
func floodHandshake(target peer.AddrInfo, garbage bool) error {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	h, err := libp2p.New(libp2p.Identity(k), libp2p.NoListenAddrs, libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DefaultSecurity, libp2p.DefaultMuxers, libp2p.DisableMetrics(), libp2p.DisableRelay(),
		libp2p.ResourceManager(&network.NullResourceManager{}))
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := h.Connect(ctx, target); err != nil {
		return err
	}
	if !garbage {
		return nil
	}
	s, err := h.NewStream(ctx, target.ID, wire.ProtocolID)
	if err != nil {
		return err
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(2 * time.Second))
	junk := make([]byte, 64)
	rand.Read(junk)
	frames := [][]byte{
		junk, // random bytes (an arbitrary length prefix and payload)
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // a length prefix longer than the encoding allows
		{0xff, 0xff, 0xff, 0x7f},                                     // a huge announced frame
		{0x10, '{', '"'},                                             // a truncated frame
		append([]byte{0x08}, []byte("notjson!")...),                  // a frame that is not a message
	}
	for _, f := range frames[:1+int(junk[0])%len(frames)] {
		if _, err := s.Write(f); err != nil {
			break
		}
	}
	return nil
}

// slowHandshake opens a raw TCP connection, writes the start of the
// multistream header a byte at a time and stalls, then closes.
func slowHandshake(target peer.AddrInfo) error {
	addr, err := manet(target.Addrs[0])
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, b := range []byte("\x13/multistream/1.0.0\n") {
		if _, err := c.Write([]byte{b}); err != nil {
			return nil // the peer cut us off: fine
		}
		time.Sleep(20 * time.Millisecond) // trickling on purpose
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	c.Read(make([]byte, 1)) // stall
	return nil
}

func manet(a ma.Multiaddr) (string, error) {
	ip, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		return "", err
	}
	port, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(port) == "" {
		return "", errors.New("no port")
	}
	return net.JoinHostPort(ip, port), nil
}
