// Package jsjson writes and reads JSON text the way JavaScript does, for the
// codecs whose bytes must equal what a JavaScript peer produces: strings as
// JSON.stringify escapes them, numbers as ECMAScript's Number::toString
// writes them, and a parser that keeps every object member in source order
// (duplicates included) so that callers can apply JSON.parse's rules, or
// reject duplicates, as they need.
//
// The package is pure: no I/O.
package jsjson
