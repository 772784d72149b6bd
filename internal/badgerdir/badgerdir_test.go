package badgerdir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRemoveEmptyLogs(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"00010.mem": "", "00002.vlog": "", "00003.vlog": "x", "00011.mem": "y", "MANIFEST": "", "000001.sst": ""}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveEmptyLogs(dir); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		gone := os.IsNotExist(err)
		wantGone := body == "" && (filepath.Ext(name) == ".mem" || filepath.Ext(name) == ".vlog")
		if gone != wantGone {
			t.Errorf("%s: removed %v, want %v", name, gone, wantGone)
		}
	}
	if err := RemoveEmptyLogs(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("a directory not yet created: %v", err)
	}
}
