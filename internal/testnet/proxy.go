// Package testnet has helpers for tests that exercise the network for real
// on loopback: a TCP proxy that can turn into a silent partition, and a
// circuit relay v2 server configured as ocapnet kernels need it.
package testnet

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// Proxy forwards TCP connections from a loopback port to a target. It can
// drop all traffic silently (a partition where packets vanish: no FIN, no
// RST, writes still succeed), heal, or reset every connection.
type Proxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	black  bool
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy starts a proxy on 127.0.0.1 to target (host:port). It is closed
// when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testnet: proxy listen: %v", err)
	}
	p := &Proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Multiaddr is the proxy's address as /ip4/127.0.0.1/tcp/PORT.
func (p *Proxy) Multiaddr() ma.Multiaddr {
	port := p.l.Addr().(*net.TCPAddr).Port
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(port))
}

// Blackhole makes the proxy discard everything in both directions while
// keeping every socket open.
func (p *Proxy) Blackhole() { p.mu.Lock(); p.black = true; p.mu.Unlock() }

// Heal makes the proxy forward again.
func (p *Proxy) Heal() { p.mu.Lock(); p.black = false; p.mu.Unlock() }

// ResetAll resets (RST) every proxied connection.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// Conns returns the number of open proxied connections (client side).
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns[client] = struct{}{}
		p.conns[server] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.pair(client, server)
	}
}

// pair forwards both directions of one proxied connection and closes both
// sockets when both directions ended.
func (p *Proxy) pair(client, server net.Conn) {
	defer p.wg.Done()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(client, server) }()
	go func() { defer wg.Done(); p.pipe(server, client) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
	client.Close()
	server.Close()
}

func (p *Proxy) blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.black
}

// pipe copies src to dst. While blackholed, data is discarded and neither a
// FIN nor a reset is passed on: the other side sees nothing at all.
func (p *Proxy) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.blackholed() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if p.blackholed() {
				return
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				return
			}
			dst.Close()
			return
		}
	}
}
