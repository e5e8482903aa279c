package endpoint

import (
	"github.com/ocapnet/ocapnet/kernelwire"
)

// onGC applies dropExports, retireExports and retireImports (kp §5). The
// table is chosen by the message, never by the sign, because the
// JavaScript kernel sends its stored form (kp §5.2, K2): dropExports and
// retireExports name Go's exports, retireImports the peer's objects Go
// imported, whatever their sign. Unknown numbers are logged and skipped.
// Go itself sends no GC frames (kp §10 MAY; the cost is that entries are
// kept).
func (ep *Endpoint) onGC(t *peerTab, m kernelwire.Message, w *writes) {
	var refs []kernelwire.RRef
	switch m := m.(type) {
	case *kernelwire.DropExports:
		refs = m.Refs
	case *kernelwire.RetireExports:
		refs = m.Refs
	case *kernelwire.RetireImports:
		refs = m.Refs
	}
	for _, r := range refs {
		if r.Kind != kernelwire.Object {
			ep.log.Info("endpoint: GC of a promise ignored", "peer", t.id, "kind", m.Kind(), "ref", r)
			continue
		}
		switch m.(type) {
		case *kernelwire.DropExports:
			e := t.exports[kernelwire.Object][r.N]
			if e == nil {
				ep.log.Info("endpoint: dropExports of an unknown Go object", "peer", t.id, "ref", r)
				continue
			}
			// Keep it resolvable until retireExports (kp §5.3).
			e.Dropped = true
			w.putExport(t, kernelwire.Object, r.N, e)
		case *kernelwire.RetireExports:
			e := t.exports[kernelwire.Object][r.N]
			if e == nil {
				ep.log.Info("endpoint: retireExports of an unknown Go object", "peer", t.id, "ref", r)
				continue
			}
			delete(t.exports[kernelwire.Object], r.N)
			if t.byKey[e.Key] == r.N {
				delete(t.byKey, e.Key)
			}
			w.del(refKey(t.id, "x", kernelwire.Object, r.N))
		case *kernelwire.RetireImports:
			if t.imports[kernelwire.Object][r.N] == nil {
				ep.log.Info("endpoint: retireImports of an unknown import", "peer", t.id, "ref", r)
				continue
			}
			delete(t.imports[kernelwire.Object], r.N)
			w.del(refKey(t.id, "i", kernelwire.Object, r.N))
		}
	}
}
