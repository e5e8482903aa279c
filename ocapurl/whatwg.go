package ocapurl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// whatwgParse runs the parts of the WHATWG URL parser (with no base URL)
// that decide what JavaScript's URL.parse(s) gives for an OCAP URL: the
// lower-cased scheme and, for a non-special scheme such as ocap, the
// pathname. ok is false where URL.parse returns null. For the special
// schemes (http, https, ws, wss, ftp, file) only the scheme is read: their
// host rules are not implemented, so such a URL counts as parsed.
func whatwgParse(s string) (scheme, pathname string, ok bool) {
	s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || !isAlpha(s[0]) {
		return "", "", false
	}
	for i := 1; i < colon; i++ {
		if c := s[i]; !isAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return "", "", false
		}
	}
	scheme = strings.ToLower(s[:colon])
	switch scheme {
	case "http", "https", "ws", "wss", "ftp", "file":
		return scheme, "", true
	}
	rest := s[colon+1:]
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	switch {
	case strings.HasPrefix(rest, "//"):
		authority, path, _ := strings.Cut(rest[2:], "/")
		hasPath := strings.Contains(rest[2:], "/")
		if !validAuthority(authority) {
			return "", "", false
		}
		if !hasPath {
			return scheme, "", true
		}
		return scheme, pathSegments(path), true
	case strings.HasPrefix(rest, "/"):
		return scheme, pathSegments(rest[1:]), true
	}
	return scheme, percentEncode(rest, c0Control), true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// validAuthority applies the authority and opaque-host rules: userinfo up
// to the last "@", a port of digits up to 65535, a host free of forbidden
// code points (or a bracketed IPv6 address), not empty when userinfo or a
// port is given.
func validAuthority(a string) bool {
	hasUser := false
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		a, hasUser = a[i+1:], true
	}
	host, port := a, ""
	hasPort := false
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		addr, err := netip.ParseAddr(a[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		host = a[:end+1]
		if after := a[end+1:]; after != "" {
			if after[0] != ':' {
				return false
			}
			port, hasPort = after[1:], true
		}
	} else if i := strings.IndexByte(a, ':'); i >= 0 {
		host, port, hasPort = a[:i], a[i+1:], true
		if strings.ContainsAny(host, "[]") {
			return false
		}
	}
	if host == "" && (hasUser || hasPort) {
		return false
	}
	if !strings.HasPrefix(host, "[") && strings.ContainsAny(host, "\x00 #/:<>?@[\\]^|") {
		return false
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n > 65535 || strings.ContainsAny(port, "+-") {
			return false
		}
	}
	return true
}

// pathSegments serialises a path as the path state does: segments are
// percent-encoded with the path set, "." segments dropped and ".."
// segments remove the one before.
func pathSegments(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch strings.ToLower(seg) {
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, percentEncode(seg, pathSet))
		}
	}
	return "/" + strings.Join(out, "/")
}

// c0Control is the C0 control percent-encode set (besides code points
// above U+007E); pathSet adds what the path percent-encode set adds.
const (
	c0Control = ""
	pathSet   = " \"#<>?`{}"
)

func percentEncode(s, extra string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || strings.IndexByte(extra, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
