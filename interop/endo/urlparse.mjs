// kernel-protocol.md Appendix A.2, extended: how Node's WHATWG URL.parse and
// the ocap-kernel's parseOcapURL (K/remote-comms.ts) read OCAP URLs. Prints
// one JSON object per case; ocapurl/parse_test.go holds the results.
//   node urlparse.mjs     (Node 22)
const cases = ['ocap:zAbc@12D3KooWPeer', 'ocap:zAbc@12D3KooWPeer,/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWRelay', 'ocap:zAbc@12D3KooWPeer,', 'ocap:zAbc@12D3KooWPeer,,/dns4/r.example/tcp/443/wss/p2p/12D3KooWR',
  'ocap:ab/cd@peer', 'ocap:a%40b@peer', 'ocap:a b@peer', 'ocap:ab?x@peer', 'ocap:ab#x@peer', 'ocap://ab@peer', 'OCAP:ab@peer', 'ocap:é@peer', 'ocap:a@b@peer', 'ocap:@peer', 'ocap:ab@', ' ocap:ab@peer ',
  // beyond A.2
  'ocap:ab@peer,h1,h2,h3', 'ocap:ab@,h1', 'ocap:ab', 'ocap:', 'ocap', 'http:ab@peer', 'ocapx:ab@peer', 'oc ap:ab@peer', '1ocap:ab@peer',
  'ocap:a\tb@pe\ner', 'ocap:a\u0001b@peer', '\u0000ocap:ab@peer\u001f', 'ocap:/ab@peer', 'ocap:/a/../b@peer', 'ocap:/a b@peer', 'ocap://host/ab@peer',
  'ocap:ab@peer?q', 'ocap:ab@peer#f', 'ocap:ab@pe%20er', 'ocap:a"b<c>@peer', 'ocap:a\u007fb@peer', 'ocap:ab@peer,/ip4/1.2.3.4/tcp/1/ws/p2p/X,', 'Ocap:ab@peer',
  'ocap:ab @peer', 'ocap:ab@peer ,h', 'ocap:ab@peer, h ',
];
const parseOcapURL = (url) => {
  const u = URL.parse(url);
  if (!u) return { error: 'unparseable URL' };
  if (u.protocol !== 'ocap:') return { error: 'not an ocap URL' };
  const parts = u.pathname.split('@');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') return { error: 'bad ocap URL' };
  const [host, ...hints] = parts[1].split(',');
  if (host === '') return { error: 'bad ocap URL' };
  return { oid: parts[0], host, hints: hints.filter((h) => h !== '') };
};
for (const c of cases) {
  const u = URL.parse(c);
  console.log(JSON.stringify({ input: c, protocol: u?.protocol ?? null, pathname: u?.pathname ?? null, ...parseOcapURL(c) }));
}
