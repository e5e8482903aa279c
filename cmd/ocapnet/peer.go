package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ocapnet/ocapnet/daemon"
	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/relay"
	"github.com/ocapnet/ocapnet/transport"
)

func init() {
	register("peer", command{
		summary: "run a peer daemon (durable messaging) driven by JSON lines (--stdio) or an HTTP API (--api)",
		run:     runPeer,
	})
}

// stdin is the peer daemon's input; tests replace it.
var stdin io.Reader = os.Stdin

func runPeer(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("peer", stderr, "[--data DIR] [--seed HEX | --mnemonic WORDS] [--relay MA ...] [--listen MA ...] [--stdio] [--api ADDR]")
	dir := fs.String("data", defaultDataDir("peer"), "data directory (identity, outbound log, delivery state); created with mode 0700 if missing")
	seedHex := fs.String("seed", "", "key seed of a new data directory (must match on later starts)")
	mnemonic := fs.String("mnemonic", "", "BIP39 mnemonic of a new data directory (must match on later starts)")
	var relays, listen, wsHosts, apiHosts listFlag
	fs.Var(&relays, "relay", "relay multiaddr ending in /p2p/<relay ID> (repeatable); reserved at start and kept")
	fs.Var(&listen, "listen", "listen multiaddr (repeatable); default ephemeral TCP and QUIC ports on all interfaces")
	fs.Var(&wsHosts, "allow-ws-host", "host that may be dialled over plain ws:// besides private addresses (repeatable)")
	stdio := fs.Bool("stdio", false, "read JSON-line requests on stdin and write JSON-line events on stdout")
	api := fs.String("api", "", "serve the HTTP API on this address (loopback unless --api-allow-remote), e.g. 127.0.0.1:7070")
	allowRemote := fs.Bool("api-allow-remote", false, "allow a non-loopback --api address (needs --api-tls-cert/--api-tls-key, or --api-insecure-http)")
	tlsCert := fs.String("api-tls-cert", "", "serve the API over HTTPS with this certificate (PEM file)")
	tlsKey := fs.String("api-tls-key", "", "the key (PEM file) of --api-tls-cert")
	insecureHTTP := fs.Bool("api-insecure-http", false, "allow --api-allow-remote over plain HTTP (the token crosses the network in clear text)")
	fs.Var(&apiHosts, "api-host", "extra host name the API answers to in the Host header, e.g. its DNS name (repeatable)")
	insecureDir := fs.Bool("allow-insecure-dir", false, "use a data directory other users can write to, and a token file they can read")
	insecure := fs.Bool("insecure-seed", false, "allow a seed shorter than 64 hex digits on non-loopback addresses")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (logs go to stderr)")
	liveness := fs.Duration("liveness", 0, "liveness check interval (default 10s; a silent partition is noticed within about 3 intervals)")
	backoffMax := fs.Duration("backoff-max", 0, "reconnection backoff cap (default 10s)")
	ackTimeout := fs.Duration("ack-timeout", 0, "retransmission timeout without acknowledgement progress (default 10s)")
	kernel := fs.Bool("kernel", false, "run a kernel endpoint: kernel messages go to it, and the export, resolve, redeem and call ops work (docs/DAEMON.md)")
	cumulative := fs.Bool("cumulative-acks", false, "announce acknowledgements as one \"acked\" event per range (with its ids) instead of one per message")
	eventMaxBytes := sizeFlag(daemon.DefaultEventMaxBytes)
	fs.Var(&eventMaxBytes, "event-max-bytes", "retention: most bytes the API's event log keeps (-1: no limit)")
	eventMaxAge := fs.Duration("event-max-age", daemon.DefaultEventMaxAge, "retention: oldest event the API's event log keeps (-1s: no limit)")
	peerEvery := fs.Duration("peer-event-interval", daemon.DefaultPeerEventInterval, "announce repeated peer events (one attempt after another) at most this often (-1s: every one)")
	sseMaxLag := sizeFlag(daemon.DefaultSSEMaxLag)
	fs.Var(&sseMaxLag, "sse-max-lag", "disconnect an event stream client that falls this far behind, telling it why")
	sseWriteTimeout := fs.Duration("sse-write-timeout", daemon.DefaultSSEWriteTimeout, "disconnect an event stream client that does not read for this long")
	readyWait := fs.Duration("ready-wait", daemon.DefaultReadyWait, "how long the ready line waits for the first relay reservations (-1s: no wait)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ocapnet peer: %v\n", err)
		return 1
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fail(err)
	}
	if *seedHex != "" && *mnemonic != "" {
		fmt.Fprintln(stderr, "ocapnet peer: --seed and --mnemonic are mutually exclusive")
		return 2
	}
	if *seedHex != "" && identity.IsWeakSeedHex(*seedHex) && !relay.IsLoopbackOnly(listen) && !*insecure {
		return fail(fmt.Errorf("%w: refused unless every --listen address is loopback or --insecure-seed is given", relay.ErrWeakSeed))
	}
	transport.RouteLibp2pLogs(log.Handler())
	opts := daemon.Options{
		Node: node.Options{
			Dir: *dir, KeySeed: *seedHex, Mnemonic: *mnemonic, Logger: log, AckTimeout: *ackTimeout,
			Transport: transport.Config{Relays: relays, ListenAddrs: listen, AllowedWSHosts: wsHosts,
				LivenessInterval: *liveness, LivenessTimeout: *liveness, ReconnectMaxDelay: *backoffMax,
				RelayRedialBase: min(*backoffMax, 5*time.Second), RelayRedialMax: *backoffMax},
		},
		API: *api, AllowRemote: *allowRemote, TLSCert: *tlsCert, TLSKey: *tlsKey, InsecureHTTP: *insecureHTTP, APIHosts: apiHosts,
		AllowInsecureDir: *insecureDir, CumulativeAcks: *cumulative, Kernel: *kernel, EventMaxBytes: int64(eventMaxBytes), EventMaxAge: *eventMaxAge,
		PeerEventInterval: *peerEvery, SSEMaxLag: int64(sseMaxLag), SSEWriteTimeout: *sseWriteTimeout, ReadyWait: *readyWait,
		Logger: log,
	}
	if *stdio {
		opts.Out = stdout
	}
	// Catch SIGINT/SIGTERM before anything is announced, so a signal sent
	// right after the ready line always stops us cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.Start(ctx, opts)
	if err != nil {
		return fail(err)
	}
	if err := d.WriteReady(stdout); err != nil {
		log.Error("writing the ready line", "err", err)
	}
	if *stdio {
		go func() {
			if err := d.ServeStdio(ctx, stdin); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("reading stdin", "err", err)
			}
			log.Info("stdin closed; still running until SIGINT or SIGTERM")
		}()
	}
	s := <-sig
	log.Info("stopping", "signal", s.String())
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := d.Stop(sctx); err != nil {
		return fail(err)
	}
	return 0
}
