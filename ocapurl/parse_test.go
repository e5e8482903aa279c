package ocapurl

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
)

// jsCases are kernel-protocol.md Appendix A.2's cases and more, with what
// Node.js 22 gave for them: URL.parse(s).pathname and the kernel's
// parseOcapURL result (interop/endo/urlparse.mjs, run on Node v22.23.3).
// The pathname is "" where URL.parse returned null, and not checked for
// the special scheme http.
var jsCases = []struct {
	in       string
	pathname string
	want     URL
	err      error
}{
	{"ocap:zAbc@12D3KooWPeer", "zAbc@12D3KooWPeer", URL{OID: "zAbc", Host: "12D3KooWPeer", Hints: []string{}}, nil},
	{"ocap:zAbc@12D3KooWPeer,/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWRelay", "zAbc@12D3KooWPeer,/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWRelay", URL{OID: "zAbc", Host: "12D3KooWPeer", Hints: []string{"/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWRelay"}}, nil},
	{"ocap:zAbc@12D3KooWPeer,", "zAbc@12D3KooWPeer,", URL{OID: "zAbc", Host: "12D3KooWPeer", Hints: []string{}}, nil},
	{"ocap:zAbc@12D3KooWPeer,,/dns4/r.example/tcp/443/wss/p2p/12D3KooWR", "zAbc@12D3KooWPeer,,/dns4/r.example/tcp/443/wss/p2p/12D3KooWR", URL{OID: "zAbc", Host: "12D3KooWPeer", Hints: []string{"/dns4/r.example/tcp/443/wss/p2p/12D3KooWR"}}, nil},
	{"ocap:ab/cd@peer", "ab/cd@peer", URL{OID: "ab/cd", Host: "peer", Hints: []string{}}, nil},
	{"ocap:a%40b@peer", "a%40b@peer", URL{OID: "a%40b", Host: "peer", Hints: []string{}}, nil},
	{"ocap:a b@peer", "a b@peer", URL{OID: "a b", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab?x@peer", "ab", URL{}, ErrBadURL},
	{"ocap:ab#x@peer", "ab", URL{}, ErrBadURL},
	{"ocap://ab@peer", "", URL{}, ErrBadURL},
	{"OCAP:ab@peer", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:é@peer", "%C3%A9@peer", URL{OID: "%C3%A9", Host: "peer", Hints: []string{}}, nil},
	{"ocap:a@b@peer", "a@b@peer", URL{}, ErrBadURL},
	{"ocap:@peer", "@peer", URL{}, ErrBadURL},
	{"ocap:ab@", "ab@", URL{}, ErrBadURL},
	{" ocap:ab@peer ", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@peer,h1,h2,h3", "ab@peer,h1,h2,h3", URL{OID: "ab", Host: "peer", Hints: []string{"h1", "h2", "h3"}}, nil},
	{"ocap:ab@,h1", "ab@,h1", URL{}, ErrBadURL},
	{"ocap:ab", "ab", URL{}, ErrBadURL},
	{"ocap:", "", URL{}, ErrBadURL},
	{"ocap", "", URL{}, ErrUnparseable},
	{"http:ab@peer", "/", URL{}, ErrNotOcap},
	{"ocapx:ab@peer", "ab@peer", URL{}, ErrNotOcap},
	{"oc ap:ab@peer", "", URL{}, ErrUnparseable},
	{"1ocap:ab@peer", "", URL{}, ErrUnparseable},
	{"ocap:a\tb@pe\ner", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:a\u0001b@peer", "a%01b@peer", URL{OID: "a%01b", Host: "peer", Hints: []string{}}, nil},
	{"\u0000ocap:ab@peer\u001f", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:/ab@peer", "/ab@peer", URL{OID: "/ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:/a/../b@peer", "/b@peer", URL{OID: "/b", Host: "peer", Hints: []string{}}, nil},
	{"ocap:/a b@peer", "/a%20b@peer", URL{OID: "/a%20b", Host: "peer", Hints: []string{}}, nil},
	{"ocap://host/ab@peer", "/ab@peer", URL{OID: "/ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@peer?q", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@peer#f", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@pe%20er", "ab@pe%20er", URL{OID: "ab", Host: "pe%20er", Hints: []string{}}, nil},
	{"ocap:a\"b<c>@peer", "a\"b<c>@peer", URL{OID: "a\"b<c>", Host: "peer", Hints: []string{}}, nil},
	{"ocap:a\x7fb@peer", "a%7Fb@peer", URL{OID: "a%7Fb", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@peer,/ip4/1.2.3.4/tcp/1/ws/p2p/X,", "ab@peer,/ip4/1.2.3.4/tcp/1/ws/p2p/X,", URL{OID: "ab", Host: "peer", Hints: []string{"/ip4/1.2.3.4/tcp/1/ws/p2p/X"}}, nil},
	{"Ocap:ab@peer", "ab@peer", URL{OID: "ab", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab @peer", "ab @peer", URL{OID: "ab ", Host: "peer", Hints: []string{}}, nil},
	{"ocap:ab@peer ,h", "ab@peer ,h", URL{OID: "ab", Host: "peer ", Hints: []string{"h"}}, nil},
	{"ocap:ab@peer, h ", "ab@peer, h", URL{OID: "ab", Host: "peer", Hints: []string{" h"}}, nil},
}

func TestParseAsJavaScript(t *testing.T) {
	for _, c := range jsCases {
		scheme, pathname, ok := whatwgParse(c.in)
		if (c.err == ErrUnparseable) == ok {
			t.Errorf("%q: URL.parse ok = %v, JavaScript %v", c.in, ok, c.err != ErrUnparseable)
		}
		if ok && scheme == "ocap" && pathname != c.pathname {
			t.Errorf("%q: pathname %q, JavaScript %q", c.in, pathname, c.pathname)
		}
		got, err := Parse(c.in)
		if err != c.err {
			t.Errorf("Parse(%q) error %v, JavaScript %v", c.in, err, c.err)
			continue
		}
		if got.OID != c.want.OID || got.Host != c.want.Host || !slices.Equal(got.Hints, c.want.Hints) {
			t.Errorf("Parse(%q) = %+v, JavaScript %+v", c.in, got, c.want)
		}
	}
}

func TestParseMoreWHATWG(t *testing.T) {
	for in, want := range map[string]string{
		"ocap:/./a/.@p":       "/a/.@p",
		"ocap:/a/./@p":        "/a/@p",
		"ocap:/%2E%2e/x@p":    "/x@p",
		"ocap://[::1]:80/a@p": "/a@p",
		"ocap://u:pw@h:1/a@p": "/a@p",
	} {
		if _, p, ok := whatwgParse(in); !ok || p != want {
			t.Errorf("whatwgParse(%q) = %q, %v; want %q", in, p, ok, want)
		}
	}
	for _, in := range []string{"ocap://[::1/a@p", "ocap://h:99999/a@p", "ocap://h:x/a@p", "ocap://@/a@p", "ocap://a b/c@p", "ocap://:1/a@p", "ocap://[fe80::1%25eth0]/a@p"} {
		if _, _, ok := whatwgParse(in); ok {
			t.Errorf("whatwgParse(%q) succeeded; URL.parse fails on it", in)
		}
	}
}

func TestParseLenient(t *testing.T) {
	for in, want := range map[string]URL{
		"ocap:zAbc@12D3KooWPeer":           {OID: "zAbc", Host: "12D3KooWPeer", Hints: []string{}},
		" \tOCAP:zAbc@peer,h1,,h2\n":       {OID: "zAbc", Host: "peer", Hints: []string{"h1", "h2"}},
		"Ocap:zAbc@peer?x":                 {OID: "zAbc", Host: "peer", Hints: []string{}},
		"ocap:zAbc@peer,/ip4/1.2.3.4#frag": {OID: "zAbc", Host: "peer", Hints: []string{"/ip4/1.2.3.4"}},
		"ocap:/odd@peer":                   {OID: "/odd", Host: "peer", Hints: []string{}},
	} {
		got, err := ParseLenient(in)
		if err != nil || got.OID != want.OID || got.Host != want.Host || !slices.Equal(got.Hints, want.Hints) {
			t.Errorf("ParseLenient(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]error{
		"http:zAbc@peer": ErrNotOcap, "ocap": ErrNotOcap, "ocap:zAbc": ErrBadURL, "ocap:@peer": ErrBadURL, "ocap:zAbc@": ErrBadURL, "ocap:zAbc@,h": ErrBadURL,
	} {
		if _, err := ParseLenient(in); err != want {
			t.Errorf("ParseLenient(%q) error %v, want %v", in, err, want)
		}
	}
}

const testPeer = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"

func TestFormatRoundTrip(t *testing.T) {
	oid, err := NewOID()
	if err != nil {
		t.Fatal(err)
	}
	u := URL{OID: oid, Host: testPeer, Hints: []string{"/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"}}
	s, err := Format(u)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ocap:" + oid + "@" + testPeer + "," + u.Hints[0]; s != want {
		t.Errorf("Format = %s, want %s", s, want)
	}
	for _, parse := range []func(string) (URL, error){Parse, ParseLenient} {
		back, err := parse(s)
		if err != nil || back.OID != u.OID || back.Host != u.Host || !slices.Equal(back.Hints, u.Hints) {
			t.Errorf("parse(Format(u)) = %+v, %v", back, err)
		}
	}
	if s, err := Format(URL{OID: "zX", Host: testPeer}); err != nil || s != "ocap:zX@"+testPeer {
		t.Errorf("Format without hints = %q, %v (no trailing comma wanted)", s, err)
	}
}

func TestFormatRefuses(t *testing.T) {
	for name, u := range map[string]URL{
		"empty oid":     {OID: "", Host: testPeer},
		"@ in oid":      {OID: "a@b", Host: testPeer},
		"? in oid":      {OID: "a?b", Host: testPeer},
		"# in oid":      {OID: "a#b", Host: testPeer},
		", in oid":      {OID: "a,b", Host: testPeer},
		"space in oid":  {OID: "a b", Host: testPeer},
		"tab in oid":    {OID: "a\tb", Host: testPeer},
		"non-ASCII oid": {OID: "é", Host: testPeer},
		"DEL in oid":    {OID: "a\x7f", Host: testPeer},
		"// oid":        {OID: "//ab", Host: testPeer},
		"/ oid":         {OID: "/ab", Host: testPeer},
		"bad host":      {OID: "zA", Host: "peer"},
		"empty host":    {OID: "zA", Host: ""},
		"empty hint":    {OID: "zA", Host: testPeer, Hints: []string{""}},
		", in hint":     {OID: "zA", Host: testPeer, Hints: []string{"a,b"}},
		"space in hint": {OID: "zA", Host: testPeer, Hints: []string{"a b"}},
	} {
		if _, err := Format(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Format = %v, want ErrInvalid", name, err)
		}
	}
}

func TestNewOID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		oid, err := NewOID()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(oid, "z") || ValidOID(oid) != nil {
			t.Fatalf("NewOID() = %q", oid)
		}
		raw, err := base58.Decode(oid[1:])
		if err != nil || len(raw) != OIDBytes {
			t.Fatalf("NewOID() = %q decodes to %d bytes (%v)", oid, len(raw), err)
		}
		if seen[oid] {
			t.Fatalf("NewOID repeated %q", oid)
		}
		seen[oid] = true
	}
}
