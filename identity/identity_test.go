package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// Vectors from reference §3.1 (upstream fixture and computed values) and
// go-ecosystem.md §2 (measured identical in Go and JavaScript).
func TestSeedVectors(t *testing.T) {
	zeros := strings.Repeat("0", 64)
	sha := func(b byte) string { s := sha256.Sum256([]byte{b}); return hex.EncodeToString(s[:]) }
	tests := []struct {
		name, seedHex, mnemonic, wantSeed, wantPub, wantPeer string
	}{
		{name: "c8 relay", seedHex: "c8", wantPub: "7c35476cda644789a1f0721d163ca59121edce4e338120bb3e5528beeeba4af7", wantPeer: "12D3KooWJBDqsyHQF2MWiCdU4kdqx4zTsSTLRdShg7Ui6CRWB4uc"},
		{name: "01", seedHex: "01", wantPub: "cecc1507dc1ddd7295951c290888f095adb9044d1b73d696e6df065d683bd4fc", wantPeer: "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"},
		{name: "02", seedHex: "02", wantPub: "6b79c57e6a095239282c04818e96112f3f03a4001ba97a564c23852a3f1ea5fc", wantPeer: "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"},
		{name: "64 zeros", seedHex: zeros, wantPub: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29", wantPeer: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"},
		{name: "sha256(1)", seedHex: sha(1), wantPeer: "12D3KooWF8RWZ1fesREpkQ2XmKerCLAKKSxguLvJ1zUHmMMX6qCF"},
		{name: "sha256(2)", seedHex: sha(2), wantPeer: "12D3KooWFgE4qtNjTA1ayPCVfBF2MZ7DH5YAa453rPmeJzsFHyNY"},
		{name: "sha256(3)", seedHex: sha(3), wantPeer: "12D3KooWKn2oK25yzDZKLH5HWg5BqPP3Kw7AHkVKtFeC5RnKPUUX"},
		{name: "mnemonic abandon", mnemonic: strings.Repeat("abandon ", 11) + "about",
			wantSeed: "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc1",
			wantPub:  "c5785e1865b708938aff8161d573006496663b1aa10834e396dc566869a2c66a",
			wantPeer: "12D3KooWP7CwQswqLKZbwvYd9wrEynnL9F2aKVP1X9huNASBTuqj"},
		{name: "mnemonic legal winner", mnemonic: "legal winner thank year wave sausage worth useful legal winner thank yellow",
			wantSeed: "878386efb78845b3355bd15ea4d39ef97d179cb712b77d5c12b6be415fffeffe",
			wantPub:  "c6f2ac5598970c79633714d3eb5c34d7bfc3e92da58c7354b37996d9a4af3ab2",
			wantPeer: "12D3KooWPCyWnZCXR3VGdrQjLr5d8TBaAHD956XZvo6xoCXYB5AR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seed Seed
			var err error
			if tt.mnemonic != "" {
				seed, err = SeedFromMnemonic(tt.mnemonic)
			} else {
				seed, err = ParseSeedHex(tt.seedHex)
			}
			if err != nil {
				t.Fatalf("derive seed: %v", err)
			}
			if tt.wantSeed != "" && seed.Hex() != tt.wantSeed {
				t.Errorf("seed = %s, want %s", seed.Hex(), tt.wantSeed)
			}
			if tt.wantPub != "" {
				if got := hex.EncodeToString(seed.PublicKey()); got != tt.wantPub {
					t.Errorf("public key = %s, want %s", got, tt.wantPub)
				}
			}
			if got := seed.PeerID().String(); got != tt.wantPeer {
				t.Errorf("peer ID = %s, want %s", got, tt.wantPeer)
			}
			// The libp2p key must agree with the raw public key.
			raw, err := seed.PrivateKey().GetPublic().Raw()
			if err != nil || hex.EncodeToString(raw) != hex.EncodeToString(seed.PublicKey()) {
				t.Errorf("PrivateKey().GetPublic() = %x (%v), want %x", raw, err, seed.PublicKey())
			}
		})
	}
}

func TestParseSeedHexFromHexRules(t *testing.T) {
	full := "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"
	tests := []struct {
		in   string
		want string // first bytes expected (rest zero), as hex
	}{
		{"01", "01"},
		{"abc", "ab0c"},
		{"c8", "c8"},
		{"ABCD", "abcd"},
		{"f", "0f"},
		{full, strings.ToLower(full)},
	}
	for _, tt := range tests {
		seed, err := ParseSeedHex(tt.in)
		if err != nil {
			t.Errorf("ParseSeedHex(%q): %v", tt.in, err)
			continue
		}
		want := tt.want + strings.Repeat("0", 64-len(tt.want))
		if seed.Hex() != want {
			t.Errorf("ParseSeedHex(%q) = %s, want %s", tt.in, seed.Hex(), want)
		}
	}
}

func TestParseSeedHexRejects(t *testing.T) {
	for _, in := range []string{"", "ag", "-1", " f", "0x01", "zz", "01 ", "é", strings.Repeat("0", 65), strings.Repeat("ab", 40)} {
		_, err := ParseSeedHex(in)
		if !errors.Is(err, ErrInvalidSeed) {
			t.Errorf("ParseSeedHex(%q) error = %v, want ErrInvalidSeed", in, err)
		}
	}
	_, err := ParseSeedHex("01g3")
	if err == nil || !strings.Contains(err.Error(), "position 3") {
		t.Errorf("error should name the position of the bad character, got %v", err)
	}
}

func TestIsWeakSeedHex(t *testing.T) {
	if !IsWeakSeedHex("c8") || !IsWeakSeedHex(strings.Repeat("a", 63)) {
		t.Error("short seeds must be weak")
	}
	if IsWeakSeedHex(strings.Repeat("a", 64)) {
		t.Error("a 64-digit seed is not weak")
	}
}

func TestSeedFromMnemonicRejects(t *testing.T) {
	tests := map[string]string{
		"empty":          "   ",
		"unknown word":   "legal winner thank year wave sausage worth useful legal winner thank zzzz",
		"bad checksum":   "legal winner thank year wave sausage worth useful legal winner thank thank",
		"too few words":  "legal winner thank year wave sausage worth useful legal winner thank",
		"too many words": "legal winner thank year wave sausage worth useful legal winner thank yellow yellow",
	}
	for name, m := range tests {
		if _, err := SeedFromMnemonic(m); !errors.Is(err, ErrInvalidMnemonic) {
			t.Errorf("%s: error = %v, want ErrInvalidMnemonic", name, err)
		}
	}
}

func TestSeedFromMnemonicWhitespaceAndCase(t *testing.T) {
	a, err := SeedFromMnemonic("legal winner thank year wave sausage worth useful legal winner thank yellow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := SeedFromMnemonic("  Legal  winner\tthank year wave sausage worth useful legal winner thank YELLOW\n")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("extra whitespace or capitals changed the seed")
	}
}

func TestRandomSeed(t *testing.T) {
	a, err := RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	b, err := RandomSeed()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == (Seed{}) {
		t.Errorf("random seeds not random: %s %s", a.Hex(), b.Hex())
	}
	if len(a.Hex()) != 64 || strings.ToLower(a.Hex()) != a.Hex() {
		t.Errorf("Hex() = %q, want 64 lower-case digits", a.Hex())
	}
	back, err := ParseSeedHex(a.Hex())
	if err != nil || back != a {
		t.Errorf("Hex round trip failed: %v", err)
	}
}

func TestSeedStringRedacts(t *testing.T) {
	s, _ := ParseSeedHex("c8")
	if strings.Contains(s.String(), "c8") {
		t.Errorf("String() leaks the seed: %s", s)
	}
}

func TestIncarnationID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewIncarnationID()
		u, err := uuid.Parse(id)
		if err != nil || len(id) != 36 || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("NewIncarnationID() = %q: not a v4 UUID (%v)", id, err)
		}
		if seen[id] {
			t.Fatalf("duplicate incarnation ID %s", id)
		}
		seen[id] = true
	}
}
