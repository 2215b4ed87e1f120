// Package blockdev gives tests a real block device holding a file system:
// an ext4 image on a loop device, standing in for an EBS volume restored
// from a snapshot and attached to a node.
package blockdev

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiesce/quiesce/internal/testkit/testenv"
)

// Tools are the programs a node's restore runs on a mounted volume, and
// the ones Ext4 needs.
var Tools = []string{"mkfs.ext4", "losetup", "mount", "umount", "mountpoint", "blkid"}

// Ext4 makes a 32 MiB ext4 file system holding a copy of dir's files on a
// loop device, and detaches the device when the test ends. It needs root;
// without it, or without the tools, the test is skipped (failed under
// QUIESCE_REQUIRE_INTEGRATION).
func Ext4(t testing.TB, dir string) string {
	t.Helper()
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "blockdev: "+tool+" is not installed (e2fsprogs, util-linux, mount)")
		}
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "blockdev: a loop device is made and mounted by root only")
	}
	img := filepath.Join(t.TempDir(), "volume.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", dir, img).CombinedOutput(); err != nil {
		t.Fatalf("blockdev: mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		testenv.Missing(t, "blockdev: no loop device: losetup: "+strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "--detach", dev).Run() })
	return dev
}
