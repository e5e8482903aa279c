package ocapurl

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/mr-tron/base58"
)

// Errors of Parse and ParseLenient; their texts are the JavaScript
// kernel's failure texts (§3.5), which a Go issuer SHOULD reuse in a
// failed redeemURLReply.
var (
	ErrUnparseable = errors.New("unparseable URL")
	ErrNotOcap     = errors.New("not an ocap URL")
	ErrBadURL      = errors.New("bad ocap URL")
)

// More failure texts of the JavaScript issuer (§3.5), for a Go issuer to
// answer a redeemURL with.
var (
	// ErrNotMyHost: the URL's host is not the issuer's peer ID.
	ErrNotMyHost = errors.New("ocapURL from a host that's not me")
	// ErrBadObjectRef: the oid names nothing the issuer exported.
	ErrBadObjectRef = errors.New("ocapURL has bad object reference")
)

// ErrInvalid is wrapped by Format's and ValidOID's errors.
var ErrInvalid = errors.New("invalid OCAP URL part")

// URL is a parsed OCAP URL.
type URL struct {
	// OID names the object; only its issuer can read it.
	OID string
	// Host is the issuer's libp2p peer ID.
	Host string
	// Hints are relay multiaddrs where the issuer may be reached.
	Hints []string
}

// OIDBytes is how many random bytes NewOID encodes: 128 bits.
const OIDBytes = 16

// NewOID returns a fresh unguessable oid: "z" (the multibase prefix of
// base58btc, as upstream's oids have) and OIDBytes random bytes in
// base58btc.
func NewOID() (string, error) {
	b := make([]byte, OIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ocapurl: reading random bytes: %w", err)
	}
	return "z" + base58.Encode(b), nil
}

// ValidOID reports why oid cannot be issued in an OCAP URL (see the
// package documentation), or nil.
func ValidOID(oid string) error {
	if oid == "" {
		return fmt.Errorf("%w: empty oid", ErrInvalid)
	}
	if oid[0] == '/' {
		return fmt.Errorf("%w: oid %q starts with \"/\"", ErrInvalid, oid)
	}
	for i := 0; i < len(oid); i++ {
		if c := oid[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("@?#,", c) >= 0 {
			return fmt.Errorf("%w: oid %q has %q at byte %d (printable ASCII other than @ ? # , only)", ErrInvalid, oid, c, i)
		}
	}
	return nil
}

// validHint reports why a hint cannot go in an OCAP URL, or nil.
func validHint(h string) error {
	if h == "" {
		return fmt.Errorf("%w: empty hint", ErrInvalid)
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("?#,", c) >= 0 {
			return fmt.Errorf("%w: hint %q has %q at byte %d", ErrInvalid, h, c, i)
		}
	}
	return nil
}

// Format returns u's text, ocap:<oid>@<host>[,<hint>]*, after checking the
// oid with ValidOID, that the host is a libp2p peer ID and that each hint
// is non-empty printable ASCII without "?", "#" or ",". Parse of the
// result gives u back.
func Format(u URL) (string, error) {
	if err := ValidOID(u.OID); err != nil {
		return "", err
	}
	if _, err := peer.Decode(u.Host); err != nil {
		return "", fmt.Errorf("%w: host %q is not a peer ID: %v", ErrInvalid, u.Host, err)
	}
	var b strings.Builder
	b.WriteString("ocap:")
	b.WriteString(u.OID)
	b.WriteByte('@')
	b.WriteString(u.Host)
	for _, h := range u.Hints {
		if err := validHint(h); err != nil {
			return "", err
		}
		b.WriteByte(',')
		b.WriteString(h)
	}
	return b.String(), nil
}

// Parse reads s exactly as the JavaScript kernel's parseOcapURL does
// (K/remote-comms.ts): URL.parse must succeed (ErrUnparseable), the
// scheme must be ocap: (ErrNotOcap), the WHATWG pathname split on "@" must
// give two non-empty parts, the second split on "," a non-empty host
// (ErrBadURL); empty hints are dropped. OID is the pathname's first part
// as URL.parse leaves it (percent-encoded where it encodes).
func Parse(s string) (URL, error) {
	scheme, pathname, ok := whatwgParse(s)
	if !ok {
		return URL{}, ErrUnparseable
	}
	if scheme != "ocap" {
		return URL{}, ErrNotOcap
	}
	parts := strings.Split(pathname, "@")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return URL{}, ErrBadURL
	}
	return split(parts[0], parts[1])
}

// split takes host and hints from the text after "@".
func split(oid, rest string) (URL, error) {
	fields := strings.Split(rest, ",")
	if fields[0] == "" {
		return URL{}, ErrBadURL
	}
	u := URL{OID: oid, Host: fields[0], Hints: []string{}}
	for _, h := range fields[1:] {
		if h != "" {
			u.Hints = append(u.Hints, h)
		}
	}
	return u, nil
}

// ParseLenient reads the URL text a redeemer sent in redeemURL the
// forgiving way §7.2 recommends for an issuer: surrounding white space and
// control characters are trimmed, tabs and newlines dropped, the scheme
// matched without regard to case, anything from the first "?" or "#" cut
// off, and the oid taken from after "ocap:" to the first "@"; then the
// host runs to the first "," and the non-empty rest are hints. Errors are
// ErrNotOcap (no ocap: scheme) and ErrBadURL (no "@", an empty oid or
// host).
func ParseLenient(s string) (URL, error) {
	s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	if len(s) < 5 || !strings.EqualFold(s[:5], "ocap:") {
		return URL{}, ErrNotOcap
	}
	s = s[5:]
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	oid, rest, ok := strings.Cut(s, "@")
	if !ok || oid == "" {
		return URL{}, ErrBadURL
	}
	return split(oid, rest)
}
