package store

import "fmt"

// Memory is the in-memory twin of the Badger store. It runs the same commit and recovery code
// over an ordered in-memory map, and models what storage keeps when things go wrong: CrashClone
// is a killed process, PowerLossClone a power loss, FailAfterWrites a crash between any two writes.
// Simulations use it to crash and restart nodes deterministically.
type Memory struct {
	*Core
	kv *memKV
}

// NewMemory returns an empty in-memory store with the default options.
func NewMemory() *Memory { return NewMemoryWith(Options{}) }

// NewMemoryWith returns an empty in-memory store with opts (sync policy, pruning). Invalid options
// are a programmer error and panic.
func NewMemoryWith(opts Options) *Memory {
	if err := opts.validate(); err != nil {
		panic(err)
	}
	m, err := openMemory(newMemKV(opts.Sync), opts)
	if err != nil {
		// An empty map cannot fail recovery; reaching this is a bug in this package.
		panic(err)
	}
	return m
}

func openMemory(kv *memKV, opts Options) (*Memory, error) {
	c, err := open(kv, opts)
	if err != nil {
		return nil, err
	}
	return &Memory{Core: c, kv: kv}, nil
}

// CrashClone returns a new Memory holding what a restart after the process was killed now would
// find: every write that returned (the operating system still holds the unsynced ones, and a
// later PowerLossClone of the clone can still lose them). It runs recovery, as opening does. m is
// unaffected.
func (m *Memory) CrashClone() *Memory {
	return m.reopen("crash clone", func() *memKV { return m.kv.crashClone() })
}

// PowerLossClone returns a new Memory holding what a restart after a power loss now would find:
// every write made durable, plus the first keep(n) of the n writes that were not (in order; keep
// chooses, and nil keeps none). Under SyncEveryCommit every write is durable when it returns, so
// nothing is lost; under SyncNone only writes followed by a sync are (SaveSignState syncs). m is
// unaffected.
func (m *Memory) PowerLossClone(keep func(unsynced int) int) *Memory {
	return m.reopen("power-loss clone", func() *memKV { return m.kv.powerLossClone(keep) })
}

func (m *Memory) reopen(what string, snapshot func() *memKV) *Memory {
	// Holding the commit lock means no commit is half done, unless one failed (an injected
	// fault), which is exactly what recovery removes.
	m.Core.mu.Lock()
	snap := snapshot()
	opts := m.Core.opts
	m.Core.mu.Unlock()
	c, err := openMemory(snap, opts)
	if err != nil {
		// Recovery over any prefix of the writes must succeed; failing is a bug in this package.
		panic(fmt.Sprintf("store: %s: %v", what, err))
	}
	return c
}

// FailAfterWrites makes the store die after n more key-value writes (each key set or deleted
// counts, also inside a batch): the write after those and every later one are not applied and
// fail with ErrCrashed, so a crash can be placed between any two writes of a commit or of
// SaveSignState. A negative n disarms a fault not yet hit. Reads keep working; CrashClone and
// PowerLossClone then restart it.
func (m *Memory) FailAfterWrites(n int) { m.kv.failAfterWrites(n) }
