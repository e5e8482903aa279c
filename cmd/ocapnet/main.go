// Command ocapnet is the one binary of ocapnet: key generation, the relay
// server, the peer daemon and its thin API clients, the demo and the
// benchmarks. Each subcommand lives in its own file and registers itself in
// the commands table from an init function; flags.go gives every flag an
// environment variable and the help output.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand of the binary.
type command struct {
	// summary is the one-line description printed by usage.
	summary string
	// run executes the subcommand with the arguments after its name. It
	// returns the process exit code: 0 success, 1 a bad value or runtime
	// failure, 2 bad usage (unknown flag, missing argument); a command may
	// document more.
	run func(args []string, stdout, stderr io.Writer) int
}

// commands is filled by the init functions of the subcommand files.
var commands = map[string]command{}

// register adds a subcommand; it panics on a duplicate name, which is a
// programming error caught by any test run.
func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("ocapnet: duplicate command " + name)
	}
	commands[name] = c
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit code. Help that was
// asked for (help, -h, --help, help CMD, CMD --help) goes to stdout; help
// after a mistake goes to stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "--version", "-version", "-V":
		return runVersion(nil, stdout, stderr)
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		c, ok := commands[args[1]]
		if !ok {
			fmt.Fprintf(stderr, "ocapnet help: unknown command %q\n\n", args[1])
			usage(stderr)
			return 2
		}
		return c.run([]string{"-h"}, stdout, stdout)
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "ocapnet: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if wantsHelp(args[1:]) {
		return c.run([]string{"-h"}, stdout, stdout)
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ocapnet <command> [flags]")
	fmt.Fprintln(w, "       ocapnet help <command>   (or ocapnet <command> --help)")
	fmt.Fprintln(w, "       ocapnet --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag can also be set by an environment variable, OCAPNET_<COMMAND>_<FLAG>")
	fmt.Fprintln(w, "(e.g. OCAPNET_PEER_DATA for ocapnet peer --data); the command line wins.")
	fmt.Fprintln(w, "OCAPNET_HOME sets the base of the default data directories.")
}
