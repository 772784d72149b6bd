package index

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Blocks of the kill -9 test: large enough that one takes several Badger transactions under a
// 1 MiB memtable, so kills land between parts of a block as well as between blocks.
const (
	crashBlockEvents = 3000
	crashMemTable    = 1 << 20
	crashSeed        = 42
)

// crashBlocks regenerates the test's chain up to block n (blocks are random but reproducible
// from the seed, so the child and the parent agree on them).
func crashBlocks(n uint64, each func(h uint64, evs []Event)) *gen {
	g := newGen(crashSeed, 200, 5)
	for h := uint64(1); h <= n; h++ {
		each(h, g.block(crashBlockEvents))
	}
	return g
}

// TestCrashWriterChild is the child of TestKillResumes: it applies blocks from the index's tip
// on until it is killed.
func TestCrashWriterChild(t *testing.T) {
	dir := os.Getenv("INDEX_CRASH_DIR")
	if dir == "" {
		t.Skip("child of TestKillResumes")
	}
	x, err := Open(dir, Options{MemTableSize: crashMemTable})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	tip := x.Height()
	g := crashBlocks(tip, func(uint64, []Event) {})
	fmt.Println("ready", tip)
	for h := tip + 1; ; h++ {
		if err := x.Apply(h, blockHash(h), g.block(crashBlockEvents)); err != nil {
			fmt.Println("apply:", err)
			os.Exit(2)
		}
	}
}

// A writer killed (SIGKILL) at random points, again and again, leaves an index that reopens at
// a tip it fully applied, agrees with the in-memory index up to it, and resumes from it.
func TestKillResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := filepath.Join(t.TempDir(), "index")
	last := uint64(0)
	for cycle := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "INDEX_CRASH_DIR="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		require.True(t, sc.Scan(), "child said nothing")
		var started uint64
		_, err = fmt.Sscanf(sc.Text(), "ready %d", &started)
		require.NoError(t, err, sc.Text())
		require.Equal(t, last, started, "the child resumes from the tip the parent saw")
		time.Sleep(time.Duration(700+cycle*230) * time.Millisecond) // lets it write; not an assertion
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()

		x, err := Open(dir, Options{MemTableSize: crashMemTable})
		require.NoError(t, err)
		tip := x.Height()
		require.GreaterOrEqual(t, tip, last, "a reopened index never goes back")
		r := newRef()
		g := crashBlocks(tip, r.apply)
		sameAsRef(t, x, r, g, 0)
		t.Logf("cycle %d: killed at block %s, resumes after %d", cycle, strconv.FormatUint(tip+1, 10), tip)
		require.NoError(t, x.Close())
		last = tip
	}
	require.Positive(t, last, "the child applied blocks")
}
