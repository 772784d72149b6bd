// Package badgerdir holds what every Badger database of a node does to its directory before
// Badger opens it (the chain store, the records index).
package badgerdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RemoveEmptyLogs deletes zero-length memtable logs (.mem) and value logs (.vlog). Badger creates
// such a file and then sizes it; a kill between the two leaves an empty file that Badger v4
// refuses to open ("Create a new file"). An empty log holds no writes and nothing points into it,
// so deleting it loses nothing. Every Badger database of a node opens through it (records/index too).
func RemoveEmptyLogs(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("badger: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !(strings.HasSuffix(e.Name(), ".mem") || strings.HasSuffix(e.Name(), ".vlog")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("badger: stat %s: %w", e.Name(), err)
		}
		if info.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("badger: remove empty log: %w", err)
			}
		}
	}
	return nil
}
