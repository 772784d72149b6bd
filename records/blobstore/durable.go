package blobstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix starts the name of every file being written; such a file left behind is a torn
// write and is deleted when found.
const TempPrefix = ".tmp-"

// WriteFileAtomic writes data to dir/name so that after a crash the file is either absent, the
// old content, or all of data: a temp file in dir, fsynced, renamed over name, and dir fsynced.
func WriteFileAtomic(dir, name string, data []byte) error {
	if err := writeFileRenamed(dir, name, data); err != nil {
		return err
	}
	return SyncDir(dir)
}

// writeFileRenamed is WriteFileAtomic without the directory fsync: the caller syncs dir once
// after writing several files into it.
func writeFileRenamed(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// SyncDir fsyncs a directory, making the creation, rename or removal of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blobs: sync directory %s: %w", dir, err)
	}
	return nil
}

// MkdirDurable creates dir (0700) if missing and makes its entry in its parent durable.
func MkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(dir))
}

// RemoveTemps deletes the torn writes (temp files) directly in dir and returns how many.
func RemoveTemps(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix) && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	if n > 0 {
		return n, SyncDir(dir)
	}
	return 0, nil
}
