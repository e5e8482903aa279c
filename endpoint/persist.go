package endpoint

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ocapnet/ocapnet/kernelwire"
	"github.com/ocapnet/ocapnet/store"
)

// The endpoint's layout in the store's KV area, namespace "endpoint":
//
//	o/<key>                    exported object: objRecord (JSON)
//	u/<oid>                    the object key an oid names
//	p/<peer>/m                 peerMeta (JSON)
//	p/<peer>/x/<o|p><n>        exportEntry (JSON); n 8-byte big-endian
//	p/<peer>/i/<o|p><n>        importEntry (JSON)
const namespace = "endpoint"

// objRecord is an object exported with a URL.
type objRecord struct {
	OID string `json:"oid"`
}

func peerPrefix(id peer.ID) string { return "p/" + id.String() + "/" }

func refKey(id peer.ID, table string, k kernelwire.Kind, n uint64) []byte {
	b := append([]byte(peerPrefix(id)+table+"/"), byte(k))
	return binary.BigEndian.AppendUint64(b, n)
}

// writes collects the changes of one step, applied in order in one store
// transaction (flush).
type writes struct {
	ops []kvOp
	// newLocals are local promises exported in this step, to watch once
	// the step's frame is sent (hookLocals).
	newLocals []*Promise
}

type kvOp struct {
	key    []byte
	val    []byte // nil: delete
	prefix bool   // delete every key with this prefix
}

func (w *writes) put(key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own plain structs
	}
	w.ops = append(w.ops, kvOp{key: key, val: b})
}

func (w *writes) del(key []byte)       { w.ops = append(w.ops, kvOp{key: key}) }
func (w *writes) delPrefix(key []byte) { w.ops = append(w.ops, kvOp{key: key, prefix: true}) }

func (w *writes) putMeta(t *peerTab) { w.put([]byte(peerPrefix(t.id)+"m"), t.meta) }
func (w *writes) putExport(t *peerTab, k kernelwire.Kind, n uint64, e *exportEntry) {
	w.put(refKey(t.id, "x", k, n), e)
}
func (w *writes) putImport(t *peerTab, k kernelwire.Kind, n uint64, e *importEntry) {
	w.put(refKey(t.id, "i", k, n), e)
}

// flush applies w durably. Called with Endpoint.mu held, so that the
// store sees changes in the order the tables made them.
func (w *writes) flush(st *store.Store) error {
	if len(w.ops) == 0 {
		return nil
	}
	ops := w.ops
	w.ops = nil
	return st.Update(func(tx *store.Tx) error {
		for _, op := range ops {
			var err error
			switch {
			case op.prefix:
				_, err = tx.KVDeletePrefix(namespace, op.key)
			case op.val == nil:
				err = tx.KVDelete(namespace, op.key)
			default:
				err = tx.KVPut(namespace, op.key, op.val)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// loaded is what load reads from the store.
type loaded struct {
	objects map[string]objRecord // key → record
	oids    map[string]string    // oid → key
	peers   map[peer.ID]*peerTab
}

// load reads the endpoint's state.
func load(st *store.Store) (*loaded, error) {
	l := &loaded{objects: map[string]objRecord{}, oids: map[string]string{}, peers: map[peer.ID]*peerTab{}}
	tab := func(id peer.ID) *peerTab {
		t := l.peers[id]
		if t == nil {
			t = newPeerTab(id)
			l.peers[id] = t
		}
		return t
	}
	err := st.View(func(tx *store.Tx) error {
		return tx.KVScan(namespace, nil, func(k, v []byte) error {
			key := string(k)
			switch {
			case strings.HasPrefix(key, "o/"):
				var r objRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				l.objects[key[2:]] = r
			case strings.HasPrefix(key, "u/"):
				l.oids[key[2:]] = string(v)
			case strings.HasPrefix(key, "p/"):
				rest := key[2:]
				i := strings.IndexByte(rest, '/')
				if i < 0 {
					return fmt.Errorf("bad key %q", key)
				}
				id, err := peer.Decode(rest[:i])
				if err != nil {
					return fmt.Errorf("bad key %q: %w", key, err)
				}
				t, sub := tab(id), rest[i+1:]
				if sub == "m" {
					return json.Unmarshal(v, &t.meta)
				}
				if len(sub) != 2+1+8 || sub[1] != '/' {
					return fmt.Errorf("bad key %q", key)
				}
				kind := kernelwire.Kind(sub[2])
				n := binary.BigEndian.Uint64([]byte(sub[3:]))
				switch sub[0] {
				case 'x':
					e := &exportEntry{}
					if err := json.Unmarshal(v, e); err != nil {
						return err
					}
					t.exports[kind][n] = e
					if e.Key != "" {
						t.byKey[e.Key] = n
					}
				case 'i':
					e := &importEntry{}
					if err := json.Unmarshal(v, e); err != nil {
						return err
					}
					t.imports[kind][n] = e
				}
			}
			return nil
		})
	})
	return l, err
}
