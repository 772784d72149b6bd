package procnet_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/node"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// byzProfile, if set, is a directory where the honest nodes of TestCompromisedMember write CPU
// profiles (medledger node --cpuprofile) for go tool pprof; the test then stops the nodes after
// the quiet flood, so the profiles show what the flood costs.
var byzProfile = flag.String("byz.cpuprofile", "", "directory for the honest nodes' CPU profiles in TestCompromisedMember (the test then ends after the quiet flood, which the profiles cover)")

// Bounds of TestCompromisedMember. They are structural, not performance targets: the targets
// (docs/security.md) are reported, not asserted.
const (
	// byzIdleWindow is each phase's quiet window (CPU, block rate): about ten empty blocks at the
	// configured one-second interval.
	byzIdleWindow = 10 * time.Second
	// byzSamples honest transactions are timed one after another in each phase.
	byzSamples = 5
	// byzRSSCap bounds an honest node's RSS growth over a flood.
	byzRSSCap = 256 << 20
	// byzMempoolSlack is room in an honest mempool beyond the attacker's quotas (its nonce window
	// and the registration quota) for the honest client's transactions.
	byzMempoolSlack = 16
)

// TestCompromisedMember runs three honest authorities and a compromised fourth — node3's real
// authority key and libp2p identity in the test-only program testnet/procnet/byzantine — and
// checks, on real processes, what docs/security.md says a compromised member can and cannot do:
//
//   - a quiet flood of what no rule blames (its own transactions behind a nonce gap, some junk
//     below the strike rate, 8 MiB proposals for far-ahead heights and 8 MiB sync answers nobody
//     asked for, sent directly to every peer within the allowance for such payloads) leaves the
//     chain at its idle pace and the honest transactions on time, at a reported cost in CPU and
//     memory;
//   - registrations by thousands of fresh keys stay within the mempools' registration quota;
//   - the loud flood (1–3 together: junk transactions, off-turn and lying proposals, far-ahead
//     proposals), and far-ahead proposals or unasked sync answers alone beyond the allowance, get
//     it refused by every honest node, and the honest three keep committing;
//   - two prevotes for one height and round, each sent to a different honest peer, become
//     evidence on the ledger that removes it from the authority set.
func TestCompromisedMember(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	ctx := context.Background()
	nw := procnettest.New(t, 4)
	g, err := nw.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	honest := []int{0, 1, 2}
	nw.Args = map[int][]string{}
	for _, i := range honest {
		if *byzProfile != "" {
			nw.Args[i] = []string{"--cpuprofile", filepath.Join(*byzProfile, "node"+strconv.Itoa(i)+".pprof")}
		}
		if err := nw.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	byz := procnettest.StartByzantine(t, nw, 3, 0)
	bad := g.Authorities[3].Key
	t.Logf("byzantine node3 joined as %s (authority %s)", byz.Peer, bad.Short())
	for _, i := range honest {
		if _, err := nw.WaitHeight(ctx, i, 2, startTimeout); err != nil {
			t.Fatal(err)
		}
	}
	waitByzPeers(t, byz, len(honest))

	hc := &honestClient{t: t, nw: nw, g: g, key: mustKey(t)}
	hc.grantee = (&phiClient{t: t, nw: nw, g: g}).waitProvider(1)
	hc.submit(0, chain.TxRegisterPatient, enrolment(t, nw, g, 0, hc.key, make([]byte, 32)))
	interval := time.Duration(g.Params.BlockIntervalMs) * time.Millisecond
	t.Logf("block interval %s (testnet init's genesis); the busy pause after a commit is 20 ms", interval)

	base := measurePhase(t, nw, hc, honest, "baseline: node3 connected and silent")

	// The quiet flood: nothing in it earns a strike. Its own transactions behind a nonce gap
	// fill its window in every honest mempool first, so that junk is pending throughout.
	byzDo(t, byz, "txs gap=255 rate=1000")
	waitByzSent(t, byz, "txs", 255)
	pending := waitMempools(t, nw, honest, 255)
	byzDo(t, byz, "txs far=100 unknown=300 rate=40")
	byzDo(t, byz, "future mib=8 rate=1")
	byzDo(t, byz, "sync mib=8 rate=1")
	quiet := measurePhase(t, nw, hc, honest, "quiet flood: gap nonces, junk under the strike rate, 8 MiB far-ahead proposals and unasked sync answers within the allowance")
	st := byzDo(t, byz, "stop")
	t.Logf("byzantine sent %v; connected to %d of %d honest peers", st.Counters, len(st.Peers), len(honest))
	if len(st.Peers) == 0 {
		t.Fatal("the honest nodes refused the quiet flood's sender: the quiet phase measured nothing")
	}
	report(t, base, quiet, honest, interval, pending)
	// The idle pace: the median gap between blocks stays within a factor of two of the
	// configured interval (node3's own silent turns, one height in four, take longer and stay
	// out of the median), and the chain neither runs at the busy pace nor stops.
	if quiet.gap < interval/2 || quiet.gap > 2*interval || quiet.rate > 2/interval.Seconds() || quiet.rate == 0 {
		t.Errorf("with only junk pending: %.2f blocks/s, median gap %s; want the idle pace (interval %s)", quiet.rate, quiet.gap, interval)
	}
	for k, i := range honest {
		if growth := quiet.rssAfter[k] - quiet.rssBefore[k]; growth > byzRSSCap {
			t.Errorf("node%d RSS grew by %d MiB under the flood (cap %d MiB)", i, growth>>20, byzRSSCap>>20)
		}
	}

	if *byzProfile != "" {
		if err := nw.StopAll(); err != nil {
			t.Errorf("clean shutdown (profiles are written on exit): %v", err)
		}
		return
	}
	registrationFlood(t, nw, byz, hc, honest)
	refusedFlood(t, nw, byz, hc, honest, "loud flood (1–3 together)",
		"future mib=8 rate=50", "txs gap=255 far=2000 unknown=3000 rate=2000", "proposals every=200")
	// Back under a fresh libp2p identity (the honest nodes refused node3's), far-ahead proposals
	// alone beyond the allowance that goes unpunished.
	rejoin(t, nw, byz, honest)
	refusedFlood(t, nw, byz, hc, honest, "8 MiB far-ahead proposals at 50 a second per peer", "future mib=8 rate=50")
	rejoin(t, nw, byz, honest)
	refusedFlood(t, nw, byz, hc, honest, "8 MiB sync answers nobody asked for at 50 a second per peer", "sync mib=8 rate=50")
	equivocation(t, nw, byz, honest, bad)

	checkAgreement(t, nw, honest)
	noHonestRefused(t, nw, honest)
	if err := nw.StopAll(); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
}

// noHonestRefused checks that no honest node refused another: the defences that refused the
// attacker must not hit honest peers that saw the same floods.
func noHonestRefused(t *testing.T, nw *procnet.Network, honest []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	for _, j := range honest {
		st, err := nw.Status(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range honest {
			if line := refusalOf(t, nw, i, st.NodeID); line != noRefusal {
				t.Errorf("node%d refused honest node%d: %s", i, j, line)
			}
		}
	}
}

// report logs the quiet flood's figures next to the baseline's, with the targets.
func report(t *testing.T, base, flood phase, honest []int, interval time.Duration, pending int) {
	t.Helper()
	extra := (flood.cpu - base.cpu).Seconds() / byzIdleWindow.Seconds()
	t.Logf("FIGURE honest CPU, 3 nodes together over %s: %.3f cores baseline, %.3f under the quiet flood: %+.3f cores (target < 0.1)",
		byzIdleWindow, cores(base.cpu), cores(flood.cpu), extra)
	t.Logf("FIGURE idle block rate with %d junk transactions pending on node0: %.2f/s (median gap %s); baseline %.2f/s (median gap %s); configured %s, busy pause 20 ms",
		pending, flood.rate, flood.gap, base.rate, base.gap, interval)
	t.Logf("FIGURE honest submit-to-final (wait=commit on node0), sorted: baseline %v, quiet flood %v (target within %s)",
		base.latencies, flood.latencies, 2*interval)
	for k, i := range honest {
		t.Logf("FIGURE node%d RSS %d MiB before the quiet flood, %d MiB after: %+d MiB (target < 64); peak %d MiB",
			i, flood.rssBefore[k]>>20, flood.rssAfter[k]>>20, (flood.rssAfter[k]-flood.rssBefore[k])>>20, flood.peak[k]>>20)
	}
}

func cores(cpu time.Duration) float64 { return cpu.Seconds() / byzIdleWindow.Seconds() }

// registrationFlood has the attacker publish registrations by 3,000 fresh keys, which are
// valid: the honest mempools must hold no more of them at once than the registration quota,
// honest commits go on and an honest transaction still commits.
func registrationFlood(t *testing.T, nw *procnet.Network, byz *procnettest.Byzantine, hc *honestClient, honest []int) {
	t.Helper()
	const regs = 3000
	h0 := height(t, nw, 0)
	before := mempoolTxs(t, nw, 0)
	watch := watchMempools(nw, honest)
	byzDo(t, byz, fmt.Sprintf("txs reg=%d rate=1000", regs))
	var lat []time.Duration
	var at []uint64
	for range 3 {
		start := time.Now()
		at = append(at, hc.grant())
		lat = append(lat, time.Since(start).Round(time.Millisecond))
	}
	waitByzSent(t, byz, "txs", regs)
	// The registrations still pending commit within a few blocks.
	if _, err := nw.WaitHeight(context.Background(), 0, height(t, nw, 0)+3, stepTimeout); err != nil {
		t.Fatal(err)
	}
	maxPending := watch()
	st := byzDo(t, byz, "stop")
	h1 := height(t, nw, 0)
	committed := txsIn(t, nw, 0, h0+1, h1)
	t.Logf("blocks during the registration flood: %s", blockSummary(t, nw, h0+1, h1))
	t.Logf("FIGURE registrations by %d fresh keys: %d transactions committed in blocks %d..%d; honest mempools held at most %d (%d pending before: the attacker's gap nonces and the honest client's); honest submit-to-final %v (at heights %v); connected to %d honest peers",
		regs, committed, h0+1, h1, maxPending, before, lat, at, len(st.Peers))
	if limit := before + 256 + byzMempoolSlack; maxPending > limit {
		t.Errorf("an honest mempool held %d transactions: more than the registration quota (256) allows beyond the %d pending before", maxPending, before)
	}
	if h1 <= h0 {
		t.Errorf("no commits during the registration flood (height %d)", h0)
	}
}

// refusedFlood runs a flood that the honest nodes must refuse: it reports how soon every honest
// node had closed its doors to the attacker and why (their logs), and the honest CPU over a
// window from the start; the honest three keep committing and an honest transaction commits.
func refusedFlood(t *testing.T, nw *procnet.Network, byz *procnettest.Byzantine, hc *honestClient, honest []int, name string, commands ...string) {
	t.Helper()
	peer := byzDo(t, byz, "status").Peer
	cpu0 := honestCPU(t, nw, honest)
	h0 := height(t, nw, 0)
	start := time.Now()
	for _, c := range commands {
		byzDo(t, byz, c)
	}
	var refusedAfter time.Duration
	err := procnet.WaitFor(context.Background(), stepTimeout, 100*time.Millisecond, "every honest node to refuse the attacker", func(ctx context.Context) (bool, error) {
		var st byzStatus
		if err := byz.Do(ctx, "status", &st); err != nil {
			return false, err
		}
		refusedAfter = time.Since(start)
		return len(st.Peers) == 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The flood goes on against closed doors for the rest of a window.
	if rest := byzIdleWindow - time.Since(start); rest > 0 {
		observe(t, nw, honest, rest)
	}
	cpu := honestCPU(t, nw, honest) - cpu0
	elapsed := time.Since(start)
	start2 := time.Now()
	hc.grant()
	lat := time.Since(start2).Round(time.Millisecond)
	st := byzDo(t, byz, "stop")
	h1 := height(t, nw, 0)
	t.Logf("FIGURE %s: every honest node refused the attacker within %s; honest CPU %.3f cores over %s (3 nodes); heights %d..%d; an honest transaction then took %s; attacker's counters %v",
		name, refusedAfter.Round(100*time.Millisecond), cpu.Seconds()/elapsed.Seconds(), elapsed.Round(time.Millisecond), h0, h1, lat, st.Counters)
	for _, i := range honest {
		t.Logf("node%d: %s", i, refusalOf(t, nw, i, peer))
	}
	if h1 < h0+3 {
		t.Errorf("honest commits stalled under the %s: heights %d..%d in %s", name, h0, h1, elapsed)
	}
}

// refusalOf is the line of node i's log that refuses peer, without its time stamp.
func refusalOf(t *testing.T, nw *procnet.Network, i int, peer string) string {
	t.Helper()
	data, err := os.ReadFile(nw.LogPath(i))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "refusing peer") && strings.Contains(line, peer) {
			if _, rest, ok := strings.Cut(line, " level="); ok {
				return "level=" + rest
			}
			return line
		}
	}
	return noRefusal
}

const noRefusal = "no refusal in the log"

// rejoin brings the attacker back under a fresh libp2p identity (its authority key unchanged)
// and waits until it is connected to the honest nodes.
func rejoin(t *testing.T, nw *procnet.Network, byz *procnettest.Byzantine, honest []int) string {
	t.Helper()
	var re struct{ Peer, Was string }
	if err := byz.Do(context.Background(), "rejoin", &re); err != nil {
		t.Fatal(err)
	}
	// Honest nodes admit only the node key the ledger binds to node3's membership, and its old
	// identity is banned. The one way back is to rotate that key on the ledger: one transaction
	// per new identity, signed with node3's provider key and visible to everyone. Banned
	// everywhere, the attacker cannot gossip it; it reaches the ledger through an honest node's
	// API here (any channel to a member would do).
	h := rotateNodeKey(t, nw, 3, re.Peer)
	// The attacker dials at once; an honest node that has not applied the rotation yet sees a
	// stranger speaking member protocols and refuses it for a while. Only once every honest
	// node holds the binding does a connection count, and it must last.
	for _, i := range honest {
		if _, err := nw.WaitHeight(context.Background(), i, h, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}
	waitByzPeersSteady(t, byz, len(honest))
	return re.Peer
}

// rotateNodeKey binds peer (a fresh libp2p identity) to node i's membership on the ledger.
// It returns the height the rotation committed at.
func rotateNodeKey(t *testing.T, nw *procnet.Network, i int, peerID string) uint64 {
	t.Helper()
	p, err := peer.Decode(peerID)
	if err != nil {
		t.Fatal(err)
	}
	key := rawNodeKey(t, p)
	prov, err := node.ReadKeyFile(filepath.Join(nw.Home(i), "keys", "provider.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	var acct struct {
		NextNonce uint64 `json:"next_nonce"`
	}
	code, out, err := nw.Do(ctx, 0, http.MethodGet, "/v1/accounts/"+prov.Public().Address().String(), nil, true)
	if err != nil || code != http.StatusOK || json.Unmarshal(out, &acct) != nil {
		t.Fatalf("node%d provider account: %d %s %v", i, code, out, err)
	}
	g, err := nw.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	tx := chain.NewTx(prov, g.ChainID, chain.TxRotateKeys, acct.NextNonce, &chain.RotateKeys{NodeKey: key})
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	code, _, out, err = nw.Request(ctx, 0, http.MethodPost, "/v1/txs?wait=commit", "application/json", req)
	if err != nil || code != http.StatusOK {
		t.Fatalf("rotating node%d's node key: %d %s %v", i, code, out, err)
	}
	var res struct {
		Height uint64 `json:"height"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Height == 0 {
		t.Fatalf("rotating node%d's node key: no commit height in %s (%v)", i, out, err)
	}
	return res.Height
}

// equivocation has the attacker, back under a fresh libp2p identity (the honest nodes refused
// its last one; its authority key is unchanged), sign two prevotes for one height
// and round and send each to a different honest peer; the honest nodes must commit the
// evidence and drop node3 from the authority set.
func equivocation(t *testing.T, nw *procnet.Network, byz *procnettest.Byzantine, honest []int, bad chain.PubKey) {
	t.Helper()
	peerID := rejoin(t, nw, byz, honest)
	var eq struct {
		Height uint64   `json:"height"`
		Round  uint32   `json:"round"`
		AtMs   int64    `json:"at_ms"`
		To     []string `json:"to"`
	}
	// Heights as node0 commits them, with the time each was first seen, until node3 is out of
	// every honest node's authority set.
	seen := map[uint64]time.Time{}
	var removed time.Duration
	var at time.Time
	// The attacker learns the height from gossip and an honest node's API, and may be a height or
	// two behind after rejoining: votes for a height the honest nodes have left are dropped as
	// old (no node can judge them any more). So it equivocates again, at most a few times, until
	// one lands: each attempt is a real offence at the height it names.
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = byz.Do(context.Background(), "equivocate", &eq); err != nil {
			t.Fatal(err)
		}
		at = time.UnixMilli(eq.AtMs)
		t.Logf("attempt %d: node3 (now peer %s) sent conflicting prevotes for %d/%d to %v", attempt, peerID, eq.Height, eq.Round, eq.To)
		err = procnet.WaitFor(context.Background(), 10*time.Second, 50*time.Millisecond, "node3 removed from every honest node's authority set", removedFrom(nw, honest, bad, seen, at, &removed))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	ev, evAt := evidenceHeight(t, nw, eq.Height, seen)
	t.Logf("FIGURE equivocation to evidence committed (block %d): %s; to removal from the authority set on all three: %s (target < 30 s)",
		ev, evAt.Sub(at).Round(10*time.Millisecond), removed.Round(10*time.Millisecond))
}

// removedFrom is the condition that every honest node has dropped bad from its authority set;
// it records when node0 first showed each height and the time since at.
func removedFrom(nw *procnet.Network, honest []int, bad chain.PubKey, seen map[uint64]time.Time, at time.Time, removed *time.Duration) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		out := 0
		for _, i := range honest {
			st, err := statusOf(ctx, nw, i)
			if err != nil {
				return false, err
			}
			if i == 0 {
				if _, ok := seen[st.Height]; !ok {
					seen[st.Height] = time.Now()
				}
			}
			if !slices.ContainsFunc(st.Authorities, func(a authorityJSON) bool { return a.Key == bad }) {
				out++
			}
		}
		*removed = time.Since(at)
		return out == len(honest), nil
	}
}

// evidenceHeight finds the block that committed the evidence: the one before the first header
// from height from on that announces a next authority set other than its own (a change decided
// by block E certifies from E+2, and header E+1 announces it). It returns the height and the
// time node0 was first seen at it.
func evidenceHeight(t *testing.T, nw *procnet.Network, from uint64, seen map[uint64]time.Time) (uint64, time.Time) {
	t.Helper()
	top := height(t, nw, 0)
	for h := max(from, 2); h <= top; h++ {
		var b struct {
			AuthoritiesHash     chain.Hash `json:"authorities_hash"`
			NextAuthoritiesHash chain.Hash `json:"next_authorities_hash"`
		}
		blockJSON(t, nw, 0, h, &b)
		if b.AuthoritiesHash != b.NextAuthoritiesHash {
			e := h - 1
			at, ok := seen[e]
			for k := e; !ok && k <= top; k++ {
				at, ok = seen[k] // node0 may have moved past E between two polls
			}
			return e, at
		}
	}
	t.Fatalf("no header from height %d to %d announces a new authority set", from, top)
	return 0, time.Time{}
}
