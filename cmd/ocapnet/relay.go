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
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	fs := newFlagSet("relay", stderr, "[--data DIR] [--seed HEX] [--listen MA ...] [--http ADDR]")
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
	maxRes := fs.Int("max-reservations", 1024, "most reservations held at once (enforced, not signalled)")
	maxResIP := fs.Int("max-reservations-per-ip", 8, "most reservations per IP address")
	maxCircuits := fs.Int("max-circuits", 64, "most open circuits per peer")
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
	srv, err := relay.Start(relay.Options{TLS: tlsConf,
		KeySeed: seed, ListenAddrs: addrs, Announce: announce, PublicIP: *publicIP,
		MaxReservations: *maxRes, MaxReservationsPerIP: *maxResIP, MaxCircuits: *maxCircuits, Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	defer srv.Stop()

	var httpSrv *http.Server
	httpListen := ""
	if *httpAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ocapnet_relay_connected_peers", Help: "Peers connected to the relay."},
			func() float64 { return float64(len(srv.Host().Network().Peers())) }))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fail(fmt.Errorf("--http: %w", err))
		}
		httpListen = ln.Addr().String()
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
