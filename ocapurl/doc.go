// Package ocapurl reads and writes OCAP URLs, ocap:<oid>@<peerId>[,<hint>]*
// (kernel-protocol.md §7): Parse reads them exactly as the JavaScript
// ocap-kernel's parseOcapURL does (WHATWG URL.parse, then the split on "@"
// and ","), ParseLenient is the forgiving reading a Go issuer applies to
// the URL text a redeemer sends back, Format writes them, and NewOID makes
// an unguessable object id.
//
// The oid is the issuer's business: a redeemer only reads the host (the
// issuer's libp2p peer ID) and the hints (relay multiaddrs), and sends the
// whole text back. An oid that Go issues must survive JavaScript's parser
// unchanged in meaning, so ValidOID allows only printable ASCII other than
// "@", "?", "#" and ",", and no leading "/": "?" and "#" end the WHATWG
// path, "@" and "," are the separators, and a leading "/" switches the
// parser to path parsing, which rewrites "." and ".." segments and
// percent-encodes spaces (the specification forbids only "//"; ocapnet
// refuses any leading "/" because of that rewriting). Whitespace and
// non-ASCII are refused because URL.parse strips or percent-encodes them.
//
// The package is pure apart from NewOID reading the system's random
// source.
package ocapurl
