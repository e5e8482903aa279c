package endpoint_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/ocapnet/ocapnet/endpoint"
	"github.com/ocapnet/ocapnet/node"
	"github.com/ocapnet/ocapnet/smallcaps"
	"github.com/ocapnet/ocapnet/transport"
)

// loopback returns node options for a node in a fresh directory on a
// loopback port.
func loopback() node.Options {
	dir, _ := os.MkdirTemp("", "endpoint-example")
	return node.Options{Dir: dir, Transport: transport.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, LivenessInterval: -1, WakeInterval: -1}}
}

func tcpAddr(ep *endpoint.Endpoint) string {
	for _, a := range ep.Node().ListenAddrs() {
		if strings.Contains(a, "/tcp/") {
			return a
		}
	}
	return ""
}

// Two endpoints on loopback: Alice exports a Go object and gives Bob its
// OCAP URL; Bob redeems it and calls it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	aliceOpts, bobOpts := loopback(), loopback()
	defer os.RemoveAll(aliceOpts.Dir)
	defer os.RemoveAll(bobOpts.Dir)

	alice, err := endpoint.Start(ctx, aliceOpts, endpoint.Options{})
	if err != nil {
		panic(err)
	}
	defer alice.Stop(ctx)
	bob, err := endpoint.Start(ctx, bobOpts, endpoint.Options{})
	if err != nil {
		panic(err)
	}
	defer bob.Stop(ctx)

	greeter := endpoint.Named("Greeter", endpoint.Methods{
		"greet": func(ctx context.Context, args []any) (any, error) {
			return fmt.Sprintf("Hello, %v!", args[0]), nil
		},
		"double": func(ctx context.Context, args []any) (any, error) {
			n, ok := args[0].(*big.Int)
			if !ok {
				return nil, &smallcaps.Error{Name: "TypeError", Message: "want a bigint"}
			}
			return new(big.Int).Mul(n, big.NewInt(2)), nil
		},
	})
	url, err := alice.ExportNamed("greeter", greeter)
	if err != nil {
		panic(err)
	}
	// The URL's hint tells Bob where Alice listens (normally a relay).
	url += "," + tcpAddr(alice)

	ref, err := bob.Redeem(ctx, url)
	if err != nil {
		panic(err)
	}
	v, err := ref.Call(ctx, "greet", "Bob")
	fmt.Println(v, err)
	v, err = ref.Call(ctx, "double", new(big.Int).Lsh(big.NewInt(1), 70))
	fmt.Println(v, err)
	_, err = ref.Call(ctx, "double", "two")
	var rej *endpoint.Rejection
	fmt.Println(errors.As(err, &rej), rej.ErrorValue().Name, rej.ErrorValue().Message)
	// Output:
	// Hello, Bob! <nil>
	// 2361183241434822606848 <nil>
	// true TypeError want a bigint
}

// A Go object passed as an argument: the callee calls it back.
func ExampleRef_Call_objectArgument() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	aliceOpts, bobOpts := loopback(), loopback()
	defer os.RemoveAll(aliceOpts.Dir)
	defer os.RemoveAll(bobOpts.Dir)
	alice, _ := endpoint.Start(ctx, aliceOpts, endpoint.Options{})
	defer alice.Stop(ctx)
	bob, _ := endpoint.Start(ctx, bobOpts, endpoint.Options{})
	defer bob.Stop(ctx)

	url, _ := alice.Export(endpoint.Methods{
		"visit": func(ctx context.Context, args []any) (any, error) {
			visitor := args[0].(*endpoint.Ref)
			name, err := visitor.Call(ctx, "name")
			return fmt.Sprintf("welcome, %v", name), err
		},
	})
	ref, err := bob.Redeem(ctx, url+","+tcpAddr(alice))
	if err != nil {
		panic(err)
	}
	me := endpoint.Methods{"name": func(context.Context, []any) (any, error) { return "Bob", nil }}
	fmt.Println(ref.Call(ctx, "visit", me))
	// Output: welcome, Bob <nil>
}
