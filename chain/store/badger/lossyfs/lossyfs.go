// Package lossyfs is a test file system that can lose power: a FUSE loopback mount over a backing
// directory that forgets, on PowerLoss, every write to a file made since that file's last fsync.
// Crash tests run a writer on the mount, kill it, call PowerLoss, unmount, and reopen the backing
// directory directly: what they find is what a disk would hold after the power went out at that
// instant, if it kept nothing that was not synced.
//
// How it keeps the promise: writes go through to the backing file at once (so reads, page faults
// and attributes are plain loopback), and the file system keeps in memory the contents each page
// had before the first write to it since the file's last FSYNC, and the size the file had then.
// FSYNC (which the kernel sends for fsync, fdatasync and msync(MS_SYNC), after writing the dirty
// pages back) forgets them: the writes are now durable. PowerLoss puts every remembered page back
// and truncates each file to its remembered size; writes arriving after it (dirty mmap pages the
// kernel writes back later, at unmount at the latest) are dropped.
//
// Shared writable mmap works through the mount (Badger maps its logs): the mount does not use
// direct_io, so the kernel page cache backs the mapping and writes dirty pages back as WRITE
// requests. Metadata operations (create, rename, unlink, truncate, fallocate) are durable at once:
// this models losing data, not directory entries.
//
// It is a test helper: one global lock serializes writes, and memory grows with unsynced data.
package lossyfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const pageSize = 4096

// FS is a mounted lossy file system.
type FS struct {
	server  *fuse.Server
	mnt     string
	backing string

	unmountOnce sync.Once
	unmountErr  error

	mu    sync.Mutex
	dead  bool
	files map[uint64]*dirty // backing inode number -> unsynced writes
	stats Stats
}

// Stats count what the file system saw; tests use them to check that a scenario happened.
type Stats struct {
	Writes       int // WRITE requests applied
	Fsyncs       int // FSYNC requests
	DroppedPages int // pages put back by PowerLoss
	LateWrites   int // WRITE requests dropped after PowerLoss
}

// dirty is what a file had before its unsynced writes.
type dirty struct {
	fd   int              // a backing descriptor of our own, to put the pages back
	size int64            // the size at the last fsync or metadata change
	old  map[int64][]byte // page index -> contents before the first unsynced write
}

// Available reports why a FUSE mount cannot work here (nil if it can).
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("lossyfs: /dev/fuse: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("lossyfs: /dev/fuse: %w", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err := exec.LookPath("fusermount"); err != nil {
			return errors.New("lossyfs: neither fusermount3 nor fusermount is installed")
		}
	}
	return nil
}

// Mount mounts a lossy view of backing at mnt (an existing empty directory).
func Mount(mnt, backing string) (*FS, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("lossyfs: %s: %w", backing, err)
	}
	lfs := &FS{mnt: mnt, backing: backing, files: map[uint64]*dirty{}}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, fs: lfs}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	// Short caches: the writer and the checks look at the same files through one mount only, so
	// the defaults would do, but nothing here needs them.
	timeout := time.Second
	server, err := fs.Mount(mnt, root.RootNode, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName: "lossyfs",
			Name:   "lossyfs",
			// Root runs the writer; default_permissions keeps the kernel's own checks.
			Options: []string{"default_permissions"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("lossyfs: mount %s: %w", mnt, err)
	}
	lfs.server = server
	return lfs, nil
}

// Stats returns the counters so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Unsynced is the number of pages written since their file's last fsync.
func (f *FS) Unsynced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.files {
		n += len(d.old)
	}
	return n
}

// PowerLoss forgets every write not yet synced and drops every later write. The caller has killed
// every process writing through the mount; Unmount follows.
func (f *FS) PowerLoss() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead {
		return nil
	}
	f.dead = true
	var errs []error
	for ino, d := range f.files {
		for page, old := range d.old {
			if _, err := syscall.Pwrite(d.fd, old, page*pageSize); err != nil {
				errs = append(errs, fmt.Errorf("lossyfs: restore inode %d page %d: %w", ino, page, err))
			}
			f.stats.DroppedPages++
		}
		if err := syscall.Ftruncate(d.fd, d.size); err != nil {
			errs = append(errs, fmt.Errorf("lossyfs: restore inode %d size: %w", ino, err))
		}
		errs = append(errs, syscall.Close(d.fd))
		delete(f.files, ino)
	}
	return errors.Join(errs...)
}

// Unmount unmounts the file system (once; later calls return the first result). After PowerLoss
// the kernel's last write-backs arrive here and are dropped.
func (f *FS) Unmount() error {
	f.unmountOnce.Do(func() {
		if err := f.server.Unmount(); err != nil {
			f.unmountErr = fmt.Errorf("lossyfs: unmount %s: %w", f.mnt, err)
			return
		}
		f.server.Wait()
	})
	return f.unmountErr
}

// write applies one WRITE to backing descriptor fd, remembering the pages it overwrites.
func (f *FS) write(fd int, data []byte, off int64) (uint32, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead {
		f.stats.LateWrites++
		return uint32(len(data)), fs.OK
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, fs.ToErrno(err)
	}
	d := f.files[st.Ino]
	if d == nil {
		// A descriptor of our own that can read the old pages and write them back, whatever
		// mode the writer opened the file in (Badger opens some write-only).
		own, err := syscall.Open(fmt.Sprintf("/proc/self/fd/%d", fd), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, fs.ToErrno(err)
		}
		d = &dirty{fd: own, size: st.Size, old: map[int64][]byte{}}
		f.files[st.Ino] = d
	}
	for page := off / pageSize; page*pageSize < off+int64(len(data)); page++ {
		if _, ok := d.old[page]; ok {
			continue
		}
		old := make([]byte, pageSize) // beyond the end of the file: zeros, cut by the size
		if _, err := syscall.Pread(d.fd, old, page*pageSize); err != nil {
			return 0, fs.ToErrno(err)
		}
		d.old[page] = old
	}
	n, err := syscall.Pwrite(fd, data, off)
	if err != nil {
		return uint32(n), fs.ToErrno(err)
	}
	f.stats.Writes++
	return uint32(n), fs.OK
}

// synced forgets the unsynced writes of the file behind fd: they are durable now.
func (f *FS) synced(fd int) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Fsyncs++
	if f.dead {
		return fs.OK
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	if d := f.files[st.Ino]; d != nil {
		delete(f.files, st.Ino)
		if err := syscall.Close(d.fd); err != nil {
			return fs.ToErrno(err)
		}
	}
	return fs.OK
}

// resized records a durable size change (truncate, fallocate) of the file behind fd: pages beyond
// the new end are gone for good, and the size to restore is the new one.
func (f *FS) resized(fd int) {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return
	}
	d := f.files[st.Ino]
	if d == nil {
		return
	}
	d.size = st.Size
	for page := range d.old {
		if page*pageSize >= st.Size {
			delete(d.old, page)
		}
	}
}

// node is a loopback node whose files report their writes and syncs to the FS.
type node struct {
	fs.LoopbackNode
	fs *FS
}

var (
	_ fs.NodeOpener          = (*node)(nil)
	_ fs.NodeCreater         = (*node)(nil)
	_ fs.NodeSetattrer       = (*node)(nil)
	_ fs.NodeCopyFileRanger  = (*node)(nil)
	_ fs.FileWriter          = (*file)(nil)
	_ fs.FileFsyncer         = (*file)(nil)
	_ fs.FileSetattrer       = (*file)(nil)
	_ fs.FileAllocater       = (*file)(nil)
	_ fs.FilePassthroughFder = (*file)(nil)
)

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != fs.OK {
		return nil, 0, errno
	}
	return n.wrap(fh), fl, fs.OK
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != fs.OK {
		return nil, nil, 0, errno
	}
	return in, n.wrap(fh), fl, fs.OK
}

func (n *node) wrap(fh fs.FileHandle) *file {
	return &file{LoopbackFile: fh.(*fs.LoopbackFile), fs: n.fs}
}

// Setattr without a file handle (truncate(2) by path) goes through a descriptor of our own so that
// the size change is recorded like ftruncate.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok && f == nil {
		fh, _, errno := n.Open(ctx, syscall.O_RDWR)
		if errno != fs.OK {
			return errno
		}
		defer fh.(*file).Release(ctx)
		f = fh
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// CopyFileRange would write behind the FS's back; the kernel falls back to reads and writes.
func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP
}

// file is a loopback file whose writes can be lost.
type file struct {
	*fs.LoopbackFile
	fs *FS
}

// withFd runs fn on the backing descriptor.
func (f *file) withFd(fn func(fd int) syscall.Errno) syscall.Errno {
	fd, ok := f.LoopbackFile.PassthroughFd()
	if !ok {
		return syscall.EBADF
	}
	return fn(fd)
}

// PassthroughFd refuses FUSE passthrough: the kernel would then write to the backing file
// directly, and the writes could not be lost.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

func (f *file) Write(_ context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	var n uint32
	errno := f.withFd(func(fd int) syscall.Errno {
		var e syscall.Errno
		n, e = f.fs.write(fd, data, off)
		return e
	})
	return n, errno
}

func (f *file) Fsync(_ context.Context, _ uint32) syscall.Errno {
	return f.withFd(f.fs.synced)
}

// Setattr and Allocate change sizes, which are metadata and durable at once. After PowerLoss
// nothing may change the backing files any more.
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.dead {
		return syscall.EIO
	}
	errno := f.LoopbackFile.Setattr(ctx, in, out)
	if _, ok := in.GetSize(); ok && errno == fs.OK {
		f.withFd(func(fd int) syscall.Errno { f.fs.resized(fd); return fs.OK })
	}
	return errno
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.dead {
		return syscall.EIO
	}
	errno := f.LoopbackFile.Allocate(ctx, off, size, mode)
	if errno == fs.OK {
		f.withFd(func(fd int) syscall.Errno { f.fs.resized(fd); return fs.OK })
	}
	return errno
}
