package store

import (
	"fmt"
)

// Identity is the node's persistent identity.
type Identity struct {
	KeySeed       string `json:"keySeed"` // 64 hex digits
	PeerID        string `json:"peerId"`
	IncarnationID string `json:"incarnationId"`
}

// Identity returns the stored identity, if any.
func (t *Tx) Identity() (Identity, bool, error) {
	var id Identity
	ok, err := getJSON(t.tx.Bucket(bucketMeta), keyIdentity, &id)
	return id, ok, err
}

// SetIdentity stores the identity. It refuses to replace a different one.
func (t *Tx) SetIdentity(id Identity) error {
	old, ok, err := t.Identity()
	if err != nil {
		return err
	}
	if ok && old != id {
		return fmt.Errorf("store: an identity (%s) is already stored", old.PeerID)
	}
	return putJSON(t.tx.Bucket(bucketMeta), keyIdentity, id)
}
