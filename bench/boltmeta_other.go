//go:build !unix

package bench

// txidReader is not available here: batch sizes are not observed.
type txidReader struct{}

func openTxidReader(string) (*txidReader, error) { return nil, errBadMeta }
func (r *txidReader) txid() uint64               { return 0 }
func (r *txidReader) close()                     {}
