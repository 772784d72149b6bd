package lossyfs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/medledger/medledger/chain/store/badger/lossyfs"
)

// mount mounts a lossy view of a fresh backing directory, or skips the test if FUSE is not
// available here.
func mount(t *testing.T) (fsys *lossyfs.FS, mnt, backing string) {
	t.Helper()
	if err := lossyfs.Available(); err != nil {
		t.Skipf("FUSE unavailable, the lossy file system cannot run: %v", err)
	}
	mnt, backing = t.TempDir(), t.TempDir()
	fsys, err := lossyfs.Mount(mnt, backing)
	if err != nil {
		t.Skipf("FUSE mount refused, the lossy file system cannot run: %v", err)
	}
	t.Cleanup(func() {
		if err := fsys.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return fsys, mnt, backing
}

// loseAndUnmount loses power and unmounts: the backing directory then holds what survived.
func loseAndUnmount(t *testing.T, fsys *lossyfs.FS) {
	t.Helper()
	if err := fsys.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Unmount(); err != nil {
		t.Fatal(err)
	}
}

func pattern(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func TestUnsyncedWriteIsLost(t *testing.T) {
	fsys, mnt, backing := mount(t)
	f, err := os.Create(filepath.Join(mnt, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pattern(10000, 'x')); err != nil {
		t.Fatal(err)
	}
	// Visible through the mount (and in the backing file) before the power goes.
	got, err := os.ReadFile(filepath.Join(mnt, "a"))
	if err != nil || !bytes.Equal(got, pattern(10000, 'x')) {
		t.Fatalf("read back through the mount: %v, %d bytes", err, len(got))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	loseAndUnmount(t, fsys)
	got, err = os.ReadFile(filepath.Join(backing, "a"))
	if err != nil {
		t.Fatal(err) // the file itself (metadata) survives
	}
	if len(got) != 0 {
		t.Fatalf("unsynced write survived: %d bytes", len(got))
	}
}

func TestSyncedWriteIsKeptLaterWriteLost(t *testing.T) {
	fsys, mnt, backing := mount(t)
	f, err := os.Create(filepath.Join(mnt, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pattern(8192, 'a')); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Overwrite part of the synced data and append, without syncing: both must be undone.
	if _, err := f.WriteAt(pattern(100, 'b'), 4000); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern(5000, 'c'), 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	loseAndUnmount(t, fsys)
	got, err := os.ReadFile(filepath.Join(backing, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(8192, 'a')) {
		t.Fatalf("after power loss the file has %d bytes, want the 8192 synced ones", len(got))
	}
}

// mapFile creates a file of size bytes through the mount and maps it shared and writable, as
// Badger maps its logs.
func mapFile(t *testing.T, path string, size int) (*os.File, []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("shared writable mmap through the mount: %v", err)
	}
	return f, data
}

func TestMmapWriteWithMsyncIsKept(t *testing.T) {
	fsys, mnt, backing := mount(t)
	f, data := mapFile(t, filepath.Join(mnt, "m"), 64<<10)
	copy(data[1000:], pattern(20000, 'm'))
	if err := unix.Msync(data, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	copy(data[30000:], pattern(100, 'n')) // after the msync: lost
	if err := unix.Munmap(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fsys.Stats().Fsyncs == 0 {
		t.Fatal("msync(MS_SYNC) did not reach the file system as FSYNC")
	}
	loseAndUnmount(t, fsys)
	got, err := os.ReadFile(filepath.Join(backing, "m"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 64<<10)
	copy(want[1000:], pattern(20000, 'm'))
	if !bytes.Equal(got, want) {
		t.Fatalf("after power loss: synced mmap data missing or unsynced data kept (%d bytes)", len(got))
	}
}

func TestMmapWriteWithoutMsyncIsLost(t *testing.T) {
	fsys, mnt, backing := mount(t)
	f, data := mapFile(t, filepath.Join(mnt, "m"), 64<<10)
	copy(data[1000:], pattern(20000, 'm'))
	if err := unix.Munmap(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	loseAndUnmount(t, fsys)
	got, err := os.ReadFile(filepath.Join(backing, "m"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 64<<10)) {
		t.Fatal("unsynced mmap writes survived the power loss")
	}
	// The dirty pages reached the file system after the power loss (at unmount at the latest) or
	// before it; either way they are gone.
	if s := fsys.Stats(); s.DroppedPages+s.LateWrites == 0 {
		t.Fatalf("no mmap write-back was seen at all: %+v", s)
	}
}

// TestWriteOnlyFile: a file opened write-only (Badger's LOCK file) still has its old pages kept.
func TestWriteOnlyFile(t *testing.T) {
	fsys, mnt, backing := mount(t)
	path := filepath.Join(mnt, "w")
	if err := os.WriteFile(path, pattern(5000, 'o'), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern(10, 'n'), 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	loseAndUnmount(t, fsys)
	got, err := os.ReadFile(filepath.Join(backing, "w"))
	if err != nil || !bytes.Equal(got, pattern(5000, 'o')) {
		t.Fatalf("write-only file after power loss: %v, %q...", err, got[:min(len(got), 120)])
	}
}
