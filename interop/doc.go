// Package interop holds ocapnet's interoperability tests with JavaScript
// peers: interop/node is an independent js-libp2p v3 peer following the
// ocap-kernel wire conventions, run under Node.js 22; the tests in this
// package drive it against Go nodes and relays (docs/INTEROP.md).
package interop
