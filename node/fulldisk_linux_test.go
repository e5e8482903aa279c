package node

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/ocapnet/ocapnet/identity"
	"github.com/ocapnet/ocapnet/store"
)

// A full disk makes Send fail with store.ErrStorage; everything accepted
// before is still there after a restart. The data directory is a 2 MiB
// tmpfs this test mounts (and unmounts); it needs root.
func TestFullDiskSendFailsLosesNothing(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })

	n := start(t, fastOptions(dir))
	away := identity.Seed{0x99}.PeerID()
	params := []byte(`"` + strings.Repeat("x", 8000) + `"`)
	var accepted uint64
	var sendErr error
	for i := 0; i < 10000 && sendErr == nil; i++ {
		var seq uint64
		seq, sendErr = n.Send(context.Background(), away, "m", params)
		if sendErr == nil {
			accepted = seq
		}
	}
	if !errors.Is(sendErr, store.ErrStorage) {
		t.Fatalf("send on a full disk: %v, want ErrStorage", sendErr)
	}
	if accepted == 0 {
		t.Fatal("nothing accepted before the disk filled")
	}
	t.Logf("accepted %d messages, then: %v", accepted, sendErr)
	stop(t, n.Node)

	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.View(func(tx *store.Tx) error {
		out, err := tx.Out(away.String(), 1, 0)
		if err != nil {
			return err
		}
		if uint64(len(out)) != accepted || out[len(out)-1].Seq != accepted {
			t.Errorf("log holds %d messages, %d were accepted", len(out), accepted)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
