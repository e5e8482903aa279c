package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/store"
)

func init() {
	register("relay", command{
		summary: "run a circuit relay v2 server for kernels behind NATs and in browsers",
		run:     runRelay,
	})
}

func runRelay(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("relay", stderr, "[--data DIR] [--seed HEX] [--listen MA ...] [--http ADDR] [--max-reservations N ...] [--allow-peer ID ...]")
	dir := fs.String("data", defaultDataDir("relay"), "data directory (identity); created if missing")
	seedHex := fs.String("seed", "", "key seed of a new data directory (must match on later starts); c8 = upstream's well-known relay")
	var listen, announce listFlag
	fs.Var(&listen, "listen", "listen multiaddr (repeatable); default TCP 9002, WS 9001, QUIC/WebTransport UDP 9002, WebRTC-direct UDP 9003")
	fs.Var(&announce, "announce", "extra multiaddr to announce (repeatable), e.g. /dns4/relay.example.com/tcp/9001/ws")
	publicIP := fs.String("public-ip", "", "announce the listen ports on this public IPv4 address")
	insecure := fs.Bool("insecure-seed", false, "allow a seed shorter than 64 hex digits on non-loopback addresses")
	wssCert := fs.String("wss-cert", "", "TLS certificate file (PEM) for /tls/ws listen addresses")
	wssKey := fs.String("wss-key", "", "TLS key file (PEM) for /tls/ws listen addresses")
	httpAddr := fs.String("http", "", "serve /metrics and /healthz on this address (e.g. 127.0.0.1:9090)")
	var lim relay.Limits
	fs.IntVar(&lim.MaxReservations, "max-reservations", 1024, "most reservations held at once (enforced, not signalled)")
	fs.IntVar(&lim.MaxReservationsPerIP, "max-reservations-per-ip", 8, "most reservations per IP address")
	fs.IntVar(&lim.MaxReservationsPerASN, "max-reservations-per-asn", 0, "most reservations per autonomous system, IPv6 only (0: 4 × --max-reservations-per-ip)")
	fs.DurationVar(&lim.ReservationTTL, "reservation-ttl", time.Hour, "how long a reservation lasts unless refreshed")
	fs.IntVar(&lim.MaxCircuits, "max-circuits", 64, "most open circuits per peer, as source and as destination")
	fs.IntVar(&lim.MaxCircuitsTotal, "max-circuits-total", 1024, "most open circuits at once")
	fs.IntVar(&lim.MaxConns, "max-conns", 0, "most connections at once (0: reservations + circuits + max(256, an eighth of that))")
	fs.IntVar(&lim.MaxConnsPerIP, "max-conns-per-ip", 0, "most connections per IP address (0: 4 × --max-reservations-per-ip)")
	var allowPeers listFlag
	fs.Var(&allowPeers, "allow-peer", "peer ID allowed to use the relay (repeatable); with --allow-peers-file, the union; default everyone")
	allowFile := fs.String("allow-peers-file", "", "file of peer IDs allowed to use the relay, one per line, # comments")
	refusalEvery := fs.Duration("refusal-log-interval", time.Minute, "how often refused requests are summarised in one WARN line")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (logs go to stderr)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ocapnet relay: %v\n", err)
		return 1
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fail(err)
	}
	if *publicIP != "" && net.ParseIP(*publicIP).To4() == nil {
		return fail(fmt.Errorf("--public-ip %q is not an IPv4 address", *publicIP))
	}
	addrs := []string(listen)
	if len(addrs) == 0 {
		addrs = relay.DefaultListenAddrs
	}
	if *seedHex != "" && identity.IsWeakSeedHex(*seedHex) && !relay.IsLoopbackOnly(addrs) && !*insecure {
		return fail(fmt.Errorf("%w: refused on non-loopback listen addresses %v; use a 64-digit seed, loopback --listen addresses, or --insecure-seed", relay.ErrWeakSeed, addrs))
	}
	// Catch SIGINT/SIGTERM before anything is announced, so a signal sent
	// right after the ready line always stops us cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	st, err := store.Open(*dir, store.Options{})
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	id, weak, err := node.LoadIdentity(st, *seedHex, "")
	if err != nil {
		return fail(err)
	}
	if weak {
		log.Warn("the key seed is shorter than 64 hex digits: anyone can derive this relay's key")
	}
	seed, err := identity.ParseSeedHex(id.KeySeed)
	if err != nil {
		return fail(err)
	}
	for _, a := range announce {
		if !strings.Contains(a, "/") {
			return fail(fmt.Errorf("--announce %q is not a multiaddr", a))
		}
	}
	var tlsConf *tls.Config
	if (*wssCert == "") != (*wssKey == "") {
		return fail(errors.New("--wss-cert and --wss-key go together"))
	}
	if *wssCert != "" {
		cert, err := tls.LoadX509KeyPair(*wssCert, *wssKey)
		if err != nil {
			return fail(fmt.Errorf("WSS certificate: %w", err))
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	allow, err := allowList(allowPeers, *allowFile)
	if err != nil {
		return fail(err)
	}
	var reg *prometheus.Registry
	if *httpAddr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	opts := relay.Options{TLS: tlsConf, KeySeed: seed, ListenAddrs: addrs, Announce: announce, PublicIP: *publicIP,
		Limits: lim, AllowPeers: allow, RefusalLogInterval: *refusalEvery, Logger: log}
	if reg != nil {
		opts.Metrics = reg
	}
	srv, err := relay.Start(opts)
	if err != nil {
		return fail(err)
	}
	defer srv.Stop()

	var httpSrv *http.Server
	httpListen := ""
	if reg != nil {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fail(fmt.Errorf("--http: %w", err))
		}
		httpListen = ln.Addr().String()
		httpSrv = &http.Server{Handler: relayHTTP(srv, reg), ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(ln)
		defer httpSrv.Close()
	}

	out := &lineWriter{w: stdout}
	out.write(readyLine{Event: "ready", PeerID: srv.ID().String(), Addrs: srv.Addrs(), HTTP: httpListen})
	s := <-sig
	log.Info("stopping", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if httpSrv != nil {
		_ = httpSrv.Shutdown(ctx)
	}
	if err := srv.Stop(); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("stop", "err", err)
	}
	return 0
}
