package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Every flag of every command can also be given as an environment variable,
// OCAPNET_<COMMAND>_<FLAG> in upper case with dashes as underscores
// (OCAPNET_PEER_DATA for `ocapnet peer --data`); the command line wins over
// the environment, and a repeatable flag takes a comma-separated list.

// envName returns the environment variable of a command's flag.
func envName(cmd, flagName string) string {
	return "OCAPNET_" + strings.ToUpper(strings.ReplaceAll(cmd+"_"+flagName, "-", "_"))
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// whose usage ("usage: ocapnet NAME SYNOPSIS", then every flag with its
// environment variable) goes to out: stderr after a bad flag; run passes
// stdout when help was asked for.
func newFlagSet(name string, out io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: ocapnet %s %s\n", name, synopsis)
		if c, ok := commands[name]; ok && c.summary != "" {
			fmt.Fprintf(out, "\n%s.\n", strings.ToUpper(c.summary[:1])+c.summary[1:])
		}
		printFlags(out, fs)
	}
	return fs
}

// testFlagPrefix starts the names of test-only flags, which the help does
// not list (peer --test-clock).
const testFlagPrefix = "test-"

// printFlags lists the flags: name, value type, environment variable, usage
// and default.
func printFlags(out io.Writer, fs *flag.FlagSet) {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(out, "\nflags (each can also be set by the environment variable shown):")
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, testFlagPrefix) {
			return // test-only flags are not shown
		}
		typ, usage := flag.UnquoteUsage(f)
		if _, ok := f.Value.(*listFlag); ok {
			typ = "value (repeatable)"
		}
		head := "  --" + f.Name
		if typ != "" {
			head += " " + typ
		}
		fmt.Fprintf(out, "%-36s %s\n", head, envName(fs.Name(), f.Name))
		fmt.Fprintf(out, "        %s", usage)
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" {
			fmt.Fprintf(out, " (default %s)", strconv.Quote(def))
		}
		fmt.Fprintln(out)
	})
}

// parseFlags parses args, then takes every flag not on the command line from
// its environment variable. When it returns done, the command must return
// code: 0 after -h, 2 after a bad flag, a bad environment variable or stray
// arguments (usage printed).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "ocapnet %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, true
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(fs.Output(), "ocapnet %s: %v\n", fs.Name(), err)
		return 2, true
	}
	return 0, false
}

// applyEnv sets the flags that the command line did not set from their
// environment variables (empty ones count as unset).
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := envName(fs.Name(), f.Name)
		v := os.Getenv(name)
		if v == "" {
			return
		}
		values := []string{v}
		if _, ok := f.Value.(*listFlag); ok {
			values = nil
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					values = append(values, part)
				}
			}
		}
		for _, x := range values {
			if e := f.Value.Set(x); e != nil {
				err = fmt.Errorf("environment variable %s=%q: invalid value for --%s: %v", name, v, f.Name, e)
				return
			}
		}
	})
	return err
}

// wantsHelp reports whether args ask for help (-h, -help or --help before a
// "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// sizeFlag is a byte count: a number, optionally with K, M or G (powers of
// 1024, "KiB" and "KB" spellings too), or a negative number for "no limit".
type sizeFlag int64

func (s *sizeFlag) String() string { return formatSize(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	t := strings.TrimSpace(v)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return fmt.Errorf("want a size such as 65536, 64KiB, 16MiB or 1GiB (-1 for no limit), got %q", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

func formatSize(n int64) string {
	switch {
	case n > 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}
