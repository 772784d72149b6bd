package badger

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

// The state path of a block of patient registrations, on a store that already holds a large state.
// Each registration reads the five keys registerPatient reads (signer, nonce and member of a fresh
// address, which are absent; the enroller's member record and enrolment counter, which are
// present) through Store.State, as execution does, and writes two fresh keys (nonce, member); the
// block also rewrites the enroller's counter. A block is 1,000 registrations, so 2,000 fresh keys.
const (
	benchRegsPerBlock = 1000
	benchMemberBytes  = 400 // a patient's member record with its ML-KEM encryption key
	benchNonceBytes   = 10
)

type benchKeys struct{ r *rand.Rand }

func (k benchKeys) addr() []byte {
	a := make([]byte, 20)
	for i := range a {
		a[i] = byte(k.r.Uint32())
	}
	return a
}

func prefixed(p string, a []byte) []byte { return append([]byte(p), a...) }

// regChanges is the change set of regs registrations by fresh addresses, plus the enroller's
// counter, and the fresh addresses.
func regChanges(k benchKeys, regs int, enroller []byte) (state.ChangeSet, [][]byte) {
	addrs := make([][]byte, regs)
	var cs state.ChangeSet
	for i := range addrs {
		addrs[i] = k.addr()
		cs.Changes = append(cs.Changes,
			state.Change{Key: prefixed("nonce/", addrs[i]), Value: make([]byte, benchNonceBytes)},
			state.Change{Key: prefixed("member/", addrs[i]), Value: make([]byte, benchMemberBytes)})
	}
	cs.Changes = append(cs.Changes, state.Change{Key: prefixed("enrol/", enroller), Value: make([]byte, 12)})
	slices.SortFunc(cs.Changes, func(a, b state.Change) int { return bytes.Compare(a.Key, b.Key) })
	return cs, addrs
}

func commitChanges(tb testing.TB, s *Store, cs state.ChangeSet) {
	prev, err := storetest.TipHash(s)
	if err != nil {
		tb.Fatal(err)
	}
	blk, cert, _ := storetest.GenBlock(1, s.Height()+1, prev, s.StateRoot(), storetest.BlockSpec{Txs: 1, TxBytes: 10})
	if _, err := s.Commit(blk, cert, cs); err != nil {
		tb.Fatal(err)
	}
}

// preload fills a fresh store in dir with about n keys (half member, half nonce records) and the
// enroller, without syncing, and closes it.
func preload(tb testing.TB, dir string, n int, k benchKeys, enroller []byte) {
	s, err := Open(dir, Options{Store: store.Options{Sync: store.SyncNone}, GCInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	gen := storetest.GenesisState(1)
	gen.Changes = append(gen.Changes, state.Change{Key: prefixed("member/", enroller), Value: make([]byte, benchMemberBytes)})
	slices.SortFunc(gen.Changes, func(a, b state.Change) int { return bytes.Compare(a.Key, b.Key) })
	if _, err := s.InitGenesis(storetest.Genesis(1), gen); err != nil {
		tb.Fatal(err)
	}
	const perBlock = 20_000 // keys
	for done := 0; done < n; done += perBlock {
		cs, _ := regChanges(k, perBlock/2, enroller)
		commitChanges(tb, s, cs)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkStatePath measures, per registration, the reads of execution and the block's commit
// (block data, state tree and marker, synced as a node does by default) on a state of 100k and
// 1M keys. read-ns/tx and commit-ns/tx split ns/tx; allocs/tx counts both.
func BenchmarkStatePath(b *testing.B) {
	for _, size := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%dk", size/1000), func(b *testing.B) {
			k := benchKeys{rand.New(rand.NewPCG(7, uint64(size)))}
			enroller := k.addr()
			dir := b.TempDir()
			preload(b, dir, size, k, enroller)
			s, err := Open(dir, Options{GCInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := s.Close(); err != nil {
					b.Error(err)
				}
			}()
			var readT, commitT, cpuT time.Duration
			var allocs uint64
			var ms runtime.MemStats
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				prev, err := storetest.TipHash(s)
				if err != nil {
					b.Fatal(err)
				}
				blk, cert, _ := storetest.GenBlock(1, s.Height()+1, prev, s.StateRoot(), storetest.BlockSpec{Txs: benchRegsPerBlock, TxBytes: 230})
				cs, addrs := regChanges(k, benchRegsPerBlock, enroller)
				runtime.ReadMemStats(&ms)
				before := ms.Mallocs
				b.StartTimer()
				c0 := cpuTime(b)
				t0 := time.Now()
				view := s.State()
				for _, a := range addrs {
					for _, key := range [][]byte{prefixed("signer/", a), prefixed("nonce/", a), prefixed("member/", a), prefixed("member/", enroller), prefixed("enrol/", enroller)} {
						if _, err := view.Get(key); err != nil {
							b.Fatal(err)
						}
					}
				}
				t1 := time.Now()
				if _, err := s.Commit(blk, cert, cs); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				cpuT += cpuTime(b) - c0
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				allocs += ms.Mallocs - before
				readT += t1.Sub(t0)
				commitT += t2.Sub(t1)
				b.StartTimer()
			}
			b.StopTimer()
			txs := float64(b.N * benchRegsPerBlock)
			b.ReportMetric(float64((readT+commitT).Nanoseconds())/txs, "ns/tx")
			b.ReportMetric(float64(readT.Nanoseconds())/txs, "read-ns/tx")
			b.ReportMetric(float64(commitT.Nanoseconds())/txs, "commit-ns/tx")
			b.ReportMetric(float64(allocs)/txs, "allocs/tx")
			b.ReportMetric(float64(cpuT.Nanoseconds())/txs, "cpu-ns/tx")
		})
	}
}

// cpuTime is the process's user and system CPU time so far: the node CPU the issue counts, which
// wall time on a shared machine with slow fsyncs does not show.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
