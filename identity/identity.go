// Package identity derives a node's libp2p identity the way the JavaScript
// ocap-kernel does (reference §3): a hex key seed, a BIP39 mnemonic or fresh
// random bytes become a 32-byte Ed25519 seed (RFC 8032), which gives the
// private key and the peer ID. It also makes incarnation IDs, the UUIDs that
// tell a restarted peer (new state) from a reconnected one.
//
// The package is pure: no I/O beyond reading the system's random source.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/tyler-smith/go-bip39"
)

// SeedSize is the length of an Ed25519 private seed in bytes.
const SeedSize = ed25519.SeedSize

// maxSeedHexLen is the longest accepted key seed string: 32 bytes in hex.
const maxSeedHexLen = 2 * SeedSize

// Seed is an Ed25519 private seed (RFC 8032): the whole secret of a node's
// identity. Its zero value is a valid (and publicly known) seed.
type Seed [SeedSize]byte

var (
	// ErrInvalidSeed reports a key seed string that is not 1 to 64 hex digits.
	ErrInvalidSeed = errors.New("invalid key seed")
	// ErrInvalidMnemonic reports a mnemonic that is not a valid BIP39
	// English phrase (unknown word, wrong word count or bad checksum).
	ErrInvalidMnemonic = errors.New("invalid BIP39 mnemonic")
)

// ParseSeedHex turns a key seed hex string into a Seed by upstream's fromHex
// rules for valid hex: bytes are decoded two digits at a time from the left,
// a short seed is zero-filled on the right ("01" → 01 00 … 00), and with an
// odd length the last digit is a byte of its own ("abc" → ab 0c 00 …).
// Upper- and lower-case digits are accepted.
//
// Unlike upstream, which passes each pair through JavaScript's parseInt and
// so silently accepts strings such as "ag", "-1" or " f", any character that
// is not a hex digit is an error, as is a string longer than 64 digits or an
// empty one. Seeds shorter than 64 digits are accepted but weak: see
// IsWeakSeedHex.
func ParseSeedHex(s string) (Seed, error) {
	var seed Seed
	if s == "" {
		return seed, fmt.Errorf("%w: empty", ErrInvalidSeed)
	}
	if len(s) > maxSeedHexLen {
		return seed, fmt.Errorf("%w: %d characters, at most %d hex digits allowed", ErrInvalidSeed, len(s), maxSeedHexLen)
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return seed, fmt.Errorf("%w: character %q at position %d is not a hex digit", ErrInvalidSeed, s[i], i+1)
		}
	}
	for i := 0; i < len(s); i += 2 {
		end := min(i+2, len(s))
		var v byte
		for _, c := range []byte(s[i:end]) {
			v = v<<4 | hexValue(c)
		}
		seed[i/2] = v
	}
	return seed, nil
}

// IsWeakSeedHex reports whether s is shorter than 64 hex digits. Such a seed
// leaves most of the key fixed at zero: anyone can enumerate short seeds, so
// the identity is public knowledge (upstream's well-known relay uses "c8").
// Callers warn about weak seeds and refuse them on public listen addresses
// unless explicitly allowed.
func IsWeakSeedHex(s string) bool {
	return len(s) < maxSeedHexLen
}

// SeedFromMnemonic derives a seed from a BIP39 English mnemonic as upstream
// does (reference §3.1): the standard BIP39 seed with an empty passphrase
// (PBKDF2-HMAC-SHA512, 2048 iterations, 64 bytes), of which the first 32
// bytes are the Ed25519 seed. Words are separated by any whitespace; the
// mnemonic's words and checksum are validated.
func SeedFromMnemonic(words string) (Seed, error) {
	var seed Seed
	normalized := strings.Join(strings.Fields(strings.ToLower(words)), " ")
	if normalized == "" {
		return seed, fmt.Errorf("%w: empty", ErrInvalidMnemonic)
	}
	if _, err := bip39.EntropyFromMnemonic(normalized); err != nil {
		return seed, fmt.Errorf("%w: %v", ErrInvalidMnemonic, err)
	}
	full := bip39.NewSeed(normalized, "")
	copy(seed[:], full[:SeedSize])
	return seed, nil
}

// RandomSeed returns a seed of 32 bytes from the system's secure random
// source, as upstream does when neither a seed nor a mnemonic is given.
func RandomSeed() (Seed, error) {
	var seed Seed
	if _, err := rand.Read(seed[:]); err != nil {
		return seed, fmt.Errorf("reading random seed: %w", err)
	}
	return seed, nil
}

// Hex returns the seed as 64 lower-case hex digits, the form upstream stores
// under the key "keySeed".
func (s Seed) Hex() string {
	return hex.EncodeToString(s[:])
}

// String hides the secret so that a Seed never ends up in a log by accident.
// Use Hex to get the key material.
func (s Seed) String() string {
	return "identity.Seed(redacted)"
}

// PrivateKey returns the libp2p Ed25519 private key for the seed; it is the
// same key JavaScript's generateKeyPairFromSeed('Ed25519', seed) makes.
func (s Seed) PrivateKey() crypto.PrivKey {
	key, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
	if err != nil {
		// UnmarshalEd25519PrivateKey only fails on a wrong length, and
		// NewKeyFromSeed always returns 64 bytes.
		panic("identity: unexpected Ed25519 key error: " + err.Error())
	}
	return key
}

// PublicKey returns the raw 32-byte Ed25519 public key for the seed.
func (s Seed) PublicKey() []byte {
	return ed25519.NewKeyFromSeed(s[:]).Public().(ed25519.PublicKey)
}

// PeerID returns the libp2p peer ID of the seed's key: the base58btc
// identity multihash of the public key, always starting with "12D3KooW".
func (s Seed) PeerID() peer.ID {
	id, err := peer.IDFromPrivateKey(s.PrivateKey())
	if err != nil {
		panic("identity: unexpected peer ID error: " + err.Error())
	}
	return id
}

// NewIncarnationID returns a fresh incarnation ID: a random (version 4) UUID
// in its 36-character text form, like upstream's crypto.randomUUID(). An
// incarnation lasts as long as a node's persistent state: it is created with
// the data directory and changes only when that state is lost.
func NewIncarnationID() string {
	return uuid.NewString()
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
