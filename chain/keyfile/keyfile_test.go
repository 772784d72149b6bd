package keyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "a.key")
	if err := WriteNew(path, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", di.Mode().Perm())
	}
	if err := WriteNew(path, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "secret" {
		t.Fatalf("content %q after a refused overwrite", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".keyfile-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
	// A dangling symlink is an existing name too.
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(filepath.Join(dir, "missing"), link); err != nil {
		t.Skip("no symlinks here")
	}
	if err := WriteNew(link, []byte("x")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("over a dangling symlink: %v, want fs.ErrExist", err)
	}
}
