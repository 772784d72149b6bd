package lossyfs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/medledger/medledger/chain/store/badger/lossyfs"
)

// mount mounts a lossy view of a fresh backing directory, or skips the test if FUSE is not
// available here.
func mount(t *testing.T) (fsys *lossyfs.FS, mnt, backing string) {
	t.Helper()
	if os.Getenv(envMapHelper) != "" {
		t.Skip("in the mmap helper")
	}
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

// The mmap tests map files in a child process: a process that maps a file of a FUSE mount it
// serves itself can hang in munmap (the kernel writes the dirty pages back synchronously, through
// the server in that very process), most visibly when it exits with the mapping still in place.
const envMapHelper = "LOSSYFS_TEST_MAP" // path to map; set only for the child

// TestMapHelper is the child: it creates the file, maps 64 KiB of it shared and writable, writes
// 20,000 bytes at offset 1000, msyncs if asked, writes 100 more bytes at 30,000, and unmaps.
func TestMapHelper(t *testing.T) {
	path := os.Getenv(envMapHelper)
	if path == "" {
		t.Skip("run by the mmap tests")
	}
	const size = 64 << 10
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("shared writable mmap through the mount: %v", err)
	}
	copy(data[1000:], pattern(20000, 'm'))
	if os.Getenv("LOSSYFS_TEST_MSYNC") == "1" {
		if err := unix.Msync(data, unix.MS_SYNC); err != nil {
			t.Fatal(err)
		}
	}
	copy(data[30000:], pattern(100, 'n')) // never synced
	if err := unix.Munmap(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func runMapHelper(t *testing.T, path string, msync bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMapHelper$", "-test.v")
	sync := "0"
	if msync {
		sync = "1"
	}
	cmd.Env = append(os.Environ(), envMapHelper+"="+path, "LOSSYFS_TEST_MSYNC="+sync)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMapHelper") {
		t.Fatalf("mmap helper: %v\n%s", err, out)
	}
}

func TestMmapWriteWithMsyncIsKept(t *testing.T) {
	fsys, mnt, backing := mount(t)
	runMapHelper(t, filepath.Join(mnt, "m"), true)
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
	runMapHelper(t, filepath.Join(mnt, "m"), false)
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
