package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ocapnet/ocapnet/identity"
)

func init() {
	register("keygen", command{
		summary: "print a peer ID and its key seed (random, or from --seed / --mnemonic)",
		run:     runKeygen,
	})
}

// runKeygen prints {"peerId":"…","keySeed":"…"} for a fresh random seed, a
// given hex seed, or a BIP39 mnemonic.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", stderr, "[--seed HEX | --mnemonic WORDS]")
	seedHex := fs.String("seed", "", "key seed: 1 to 64 hex digits (shorter seeds are zero-filled and weak)")
	mnemonic := fs.String("mnemonic", "", "BIP39 English mnemonic to derive the key seed from")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *seedHex != "" && *mnemonic != "" {
		fmt.Fprintln(stderr, "ocapnet keygen: --seed and --mnemonic are mutually exclusive")
		fs.Usage()
		return 2
	}
	var seed identity.Seed
	var err error
	switch {
	case *seedHex != "":
		seed, err = identity.ParseSeedHex(*seedHex)
		if err == nil && identity.IsWeakSeedHex(*seedHex) {
			fmt.Fprintf(stderr, "ocapnet keygen: warning: the seed has only %d of 64 hex digits; anyone can derive this key\n", len(*seedHex))
		}
	case *mnemonic != "":
		seed, err = identity.SeedFromMnemonic(*mnemonic)
	default:
		seed, err = identity.RandomSeed()
	}
	if err != nil {
		fmt.Fprintf(stderr, "ocapnet keygen: %v\n", err)
		return 1
	}
	out, _ := json.Marshal(struct {
		PeerID  string `json:"peerId"`
		KeySeed string `json:"keySeed"`
	}{seed.PeerID().String(), seed.Hex()})
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}
