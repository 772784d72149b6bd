package records

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/records/index"
)

// An index that does not open (here a garbage Badger manifest) is rebuilt from the chain
// instead of keeping the node down.
func TestBrokenIndexIsRebuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("not a badger manifest"), 0o600))
	_, err := index.Open(dir, index.Options{})
	require.Error(t, err, "the premise: Badger refuses the directory")
	idx, from, err := openIndex(dir, nil)
	require.NoError(t, err)
	defer idx.Close()
	require.Zero(t, from, "a rebuilt index starts from block 1")
	require.Zero(t, idx.Height())
}
