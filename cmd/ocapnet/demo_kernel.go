package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/transport"
)

// kernelDemo (ocapnet demo --kernel): two kernel endpoints through a
// relay; one exports a Go object and issues its OCAP URL, the other
// redeems it and calls it, also across a restart of the exporter (a call
// made while it is down is answered by the restarted process).
func kernelDemo(out io.Writer, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
	defer cancel()
	began := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	relayAddr, tmp, cleanup, err := demoRelayAndDir("ocapnet-kernel-demo-")
	if err != nil {
		return 1, err
	}
	defer cleanup()
	say("relay     %s", relayAddr)
	nodeOpts := func(dir string) node.Options {
		return node.Options{Dir: dir, Transport: transport.Config{
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Relays: []string{relayAddr},
			ReconnectBaseDelay: 100 * time.Millisecond, ReconnectMaxDelay: time.Second, WakeInterval: -1,
		}}
	}
	process := 0
	greeter := func() endpoint.Handler {
		process++
		p := process
		return endpoint.Named("Greeter", endpoint.Methods{
			"greet": func(ctx context.Context, args []any) (any, error) {
				return fmt.Sprintf("Hello, %v! (exporter process %d)", args[0], p), nil
			},
		})
	}
	startExporter := func() (*endpoint.Endpoint, error) {
		ep, err := endpoint.Start(ctx, nodeOpts(tmp+"/exporter"), endpoint.Options{Objects: map[string]endpoint.Handler{"greeter": greeter()}})
		if err != nil {
			return nil, err
		}
		// Wait for the relay reservation: the URL's hints name the relay.
		for !hasCircuit(ep.Node().ListenAddrs()) {
			if ctx.Err() != nil {
				ep.Stop(context.Background())
				return nil, fmt.Errorf("no relay reservation: %w", ctx.Err())
			}
			time.Sleep(50 * time.Millisecond) // polling the reservation
		}
		return ep, nil
	}
	exp, err := startExporter()
	if err != nil {
		return 1, err
	}
	stopExp := func() { exp.Stop(context.Background()) }
	defer func() { stopExp() }()
	url, err := exp.ExportNamed("greeter", nil)
	if err != nil {
		return 1, err
	}
	say("exporter  %s", exp.PeerID())
	say("1. the exporter exports a Go object: %s", url)

	caller, err := endpoint.Start(ctx, nodeOpts(tmp+"/caller"), endpoint.Options{})
	if err != nil {
		return 1, err
	}
	defer caller.Stop(context.Background())
	say("caller    %s", caller.PeerID())
	ref, err := caller.Redeem(ctx, url)
	if err != nil {
		return 1, fmt.Errorf("redeem: %w", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, timeout)
	v, err := ref.Call(cctx, "greet", "caller")
	ccancel()
	if err != nil {
		return 1, fmt.Errorf("call: %w", err)
	}
	say("2. the caller redeems the URL through the relay and calls greet: %q", v)

	say("3. the exporter stops; the caller calls greet again (the call waits in its outbound log)")
	stopExp()
	pending, err := ref.Send(ctx, "greet", "patient caller")
	if err != nil {
		return 1, err
	}
	say("4. the exporter restarts from its data directory (same incarnation, tables kept)")
	restarted := time.Now()
	if exp, err = startExporter(); err != nil {
		return 1, err
	}
	cctx, ccancel = context.WithTimeout(ctx, timeout)
	v, err = pending.Wait(cctx)
	ccancel()
	if err != nil {
		return 1, fmt.Errorf("the call made during the outage: %w", err)
	}
	say("   the call made during the outage: %q (%.1fs after the restart)", v, time.Since(restarted).Seconds())
	cctx, ccancel = context.WithTimeout(ctx, timeout)
	v, err = ref.Call(cctx, "greet", "same reference")
	ccancel()
	if err != nil {
		return 1, err
	}
	say("5. the reference from before the restart still works: %q", v)
	ref2, err := caller.Redeem(ctx, url)
	if err != nil {
		return 1, fmt.Errorf("redeeming the URL again: %w", err)
	}
	say("   and the URL still redeems (the same object: %v)", ref2.String() == ref.String())
	say("(demo took %.1fs)", time.Since(began).Seconds())
	return 0, nil
}

func hasCircuit(addrs []string) bool {
	for _, a := range addrs {
		if strings.Contains(a, "/p2p-circuit") {
			return true
		}
	}
	return false
}
