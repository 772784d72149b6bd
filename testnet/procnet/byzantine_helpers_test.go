package procnet_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// byzStatus is the byzantine program's status reply.
type byzStatus struct {
	Peer     string         `json:"peer"`
	Height   uint64         `json:"height"`
	Round    uint32         `json:"round"`
	Peers    []string       `json:"peers"`
	Member   bool           `json:"member"`
	Counters map[string]int `json:"counters"`
}

// byzDo sends a command to the attacker and returns its status afterwards.
func byzDo(t *testing.T, byz *procnettest.Byzantine, command string) byzStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := byz.Do(ctx, command, nil); err != nil {
		t.Fatal(err)
	}
	var st byzStatus
	if err := byz.Do(ctx, "status", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func waitByzPeers(t *testing.T, byz *procnettest.Byzantine, n int) {
	t.Helper()
	err := procnet.WaitFor(context.Background(), startTimeout, 200*time.Millisecond, fmt.Sprintf("byzantine connected to %d peers", n), func(ctx context.Context) (bool, error) {
		var st byzStatus
		if err := byz.Do(ctx, "status", &st); err != nil {
			return false, err
		}
		return len(st.Peers) >= n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitByzPeersSteady waits until the attacker has been connected to at least n peers for
// byzSteady without a break: a connection an honest node is about to close does not count.
func waitByzPeersSteady(t *testing.T, byz *procnettest.Byzantine, n int) {
	t.Helper()
	var since time.Time
	err := procnet.WaitFor(context.Background(), startTimeout, 200*time.Millisecond, fmt.Sprintf("byzantine connected to %d peers for %s", n, byzSteady), func(ctx context.Context) (bool, error) {
		var st byzStatus
		if err := byz.Do(ctx, "status", &st); err != nil {
			return false, err
		}
		if len(st.Peers) < n {
			since = time.Time{}
			return false, nil
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= byzSteady, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// byzSteady is how long the attacker's connections must last to count.
const byzSteady = 2 * time.Second

// waitByzSent waits until the attacker's counter has reached n (published or dropped).
func waitByzSent(t *testing.T, byz *procnettest.Byzantine, counter string, n int) {
	t.Helper()
	err := procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, fmt.Sprintf("byzantine %s counter at %d", counter, n), func(ctx context.Context) (bool, error) {
		var st byzStatus
		if err := byz.Do(ctx, "status", &st); err != nil {
			return false, err
		}
		return st.Counters[counter]+st.Counters[counter+"_dropped"] >= n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// phase is what measurePhase saw.
type phase struct {
	cpu                       time.Duration // the honest nodes' CPU over the idle window, summed
	rate                      float64       // node0's blocks a second over the idle window
	gap                       time.Duration // the median time between those blocks
	rssBefore, rssAfter, peak []int64
	latencies                 []time.Duration
}

// measurePhase watches the honest nodes for byzIdleWindow without submitting anything (CPU,
// block rate), then times byzSamples honest transactions one after another.
func measurePhase(t *testing.T, nw *procnet.Network, hc *honestClient, honest []int, name string) phase {
	t.Helper()
	var p phase
	for _, i := range honest {
		u, err := nw.Usage(i)
		if err != nil {
			t.Fatal(err)
		}
		p.rssBefore = append(p.rssBefore, u.RSS)
	}
	cpu0 := honestCPU(t, nw, honest)
	h0 := height(t, nw, 0)
	start := time.Now()
	observe(t, nw, honest, byzIdleWindow)
	elapsed := time.Since(start)
	h1 := height(t, nw, 0)
	p.cpu = time.Duration(float64(honestCPU(t, nw, honest)-cpu0) * byzIdleWindow.Seconds() / elapsed.Seconds())
	p.rate = float64(h1-h0) / elapsed.Seconds()
	p.gap = medianGap(t, nw, h0, h1)
	var heights []uint64
	for range byzSamples {
		start := time.Now()
		heights = append(heights, hc.grant())
		p.latencies = append(p.latencies, time.Since(start).Round(time.Millisecond))
	}
	// What the samples waited for: each one's commit height, and the blocks around them.
	t.Logf("%s: samples %v committed at heights %v; blocks %s", name, p.latencies, heights, blockSummary(t, nw, h1+1, height(t, nw, 0)))
	for _, i := range honest {
		u, err := nw.Usage(i)
		if err != nil {
			t.Fatal(err)
		}
		p.rssAfter = append(p.rssAfter, u.RSS)
		p.peak = append(p.peak, u.PeakRSS)
	}
	slices.Sort(p.latencies)
	t.Logf("%s: heights %d..%d in %s (%.2f blocks/s, median gap %s), honest CPU %.3f cores, honest submit-to-final %v",
		name, h0, h1, elapsed.Round(time.Millisecond), p.rate, p.gap, cores(p.cpu), p.latencies)
	return p
}

// observe watches the honest nodes for d (a measurement window, not a wait for a condition),
// failing the test if one exits.
func observe(t *testing.T, nw *procnet.Network, honest []int, d time.Duration) {
	t.Helper()
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-end.C:
			return
		case <-tick.C:
			for _, i := range honest {
				if exitErr, ok := nw.Exited(i); ok {
					t.Fatalf("node%d exited: %v", i, exitErr)
				}
			}
		}
	}
}

// honestCPU is the CPU time the honest nodes have used so far, summed.
func honestCPU(t *testing.T, nw *procnet.Network, honest []int) time.Duration {
	t.Helper()
	var sum time.Duration
	for _, i := range honest {
		u, err := nw.Usage(i)
		if err != nil {
			t.Fatal(err)
		}
		sum += u.CPU
	}
	return sum
}

// medianGap is the median time between consecutive blocks h0..h1 on node0, from their times.
func medianGap(t *testing.T, nw *procnet.Network, h0, h1 uint64) time.Duration {
	t.Helper()
	var times []time.Time
	for h := max(h0, 1); h <= h1; h++ {
		var b struct {
			Time string `json:"time"`
		}
		blockJSON(t, nw, 0, h, &b)
		at, err := time.Parse(time.RFC3339Nano, b.Time)
		if err != nil {
			t.Fatalf("block %d time %q: %v", h, b.Time, err)
		}
		times = append(times, at)
	}
	var gaps []time.Duration
	for k := 1; k < len(times); k++ {
		gaps = append(gaps, times[k].Sub(times[k-1]))
	}
	if len(gaps) == 0 {
		return 0
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// txsIn counts the transactions in node i's blocks from..to.
func txsIn(t *testing.T, nw *procnet.Network, i int, from, to uint64) int {
	t.Helper()
	n := 0
	for h := from; h <= to; h++ {
		var b struct {
			TxCount int `json:"tx_count"`
		}
		blockJSON(t, nw, i, h, &b)
		n += b.TxCount
	}
	return n
}

// blockSummary lists node0's blocks from..to as height:txs(+ms since the previous block)/round.
func blockSummary(t *testing.T, nw *procnet.Network, from, to uint64) string {
	t.Helper()
	var out []string
	var prev time.Time
	for h := max(from, 1); h <= to; h++ {
		var b struct {
			Time    string `json:"time"`
			TxCount int    `json:"tx_count"`
			Commit  struct {
				Round uint32 `json:"round"`
			} `json:"commit"`
		}
		blockJSON(t, nw, 0, h, &b)
		at, _ := time.Parse(time.RFC3339Nano, b.Time)
		gap := "?"
		if !prev.IsZero() {
			gap = strconv.FormatInt(at.Sub(prev).Milliseconds(), 10)
		}
		prev = at
		out = append(out, fmt.Sprintf("%d:%d(+%sms)/r%d", h, b.TxCount, gap, b.Commit.Round))
	}
	return strings.Join(out, " ")
}

func blockJSON(t *testing.T, nw *procnet.Network, i int, h uint64, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	b, err := nw.Block(ctx, i, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Raw, out); err != nil {
		t.Fatalf("node%d block %d: %v", i, h, err)
	}
}

// statusJSON is the part of GET /v1/status these tests read beyond procnet.Status.
type statusJSON struct {
	Height      uint64          `json:"height"`
	NodeID      string          `json:"node_id"`
	Peers       []string        `json:"peers"`
	Authorities []authorityJSON `json:"authorities"`
	Mempool     struct {
		Txs int `json:"txs"`
	} `json:"mempool"`
}

type authorityJSON struct {
	Key chain.PubKey `json:"key"`
}

func statusOf(ctx context.Context, nw *procnet.Network, i int) (*statusJSON, error) {
	st, err := nw.Status(ctx, i)
	if err != nil {
		return nil, err
	}
	var s statusJSON
	if err := json.Unmarshal(st.Raw, &s); err != nil {
		return nil, fmt.Errorf("node%d status: %w", i, err)
	}
	return &s, nil
}

// mempoolTxs is node i's pending transaction count.
func mempoolTxs(t *testing.T, nw *procnet.Network, i int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	st, err := statusOf(ctx, nw, i)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mempool.Txs
}

// waitMempools waits until every honest node holds at least n pending transactions, and
// returns node0's count.
func waitMempools(t *testing.T, nw *procnet.Network, honest []int, n int) int {
	t.Helper()
	got := 0
	err := procnet.WaitFor(context.Background(), stepTimeout, 100*time.Millisecond, fmt.Sprintf("%d transactions pending on every honest node", n), func(ctx context.Context) (bool, error) {
		for _, i := range honest {
			st, err := statusOf(ctx, nw, i)
			if err != nil {
				return false, err
			}
			if i == honest[0] {
				got = st.Mempool.Txs
			}
			if st.Mempool.Txs < n {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// watchMempools polls the honest nodes' pending counts every 100 ms until the returned function
// is called, which returns the largest count seen on any of them.
func watchMempools(nw *procnet.Network, honest []int) func() int {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	peak := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, i := range honest {
				if st, err := statusOf(ctx, nw, i); err == nil {
					peak = max(peak, st.Mempool.Txs)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() int {
		cancel()
		wg.Wait()
		return peak
	}
}

// honestClient is a registered patient who submits transactions and waits for their commit.
type honestClient struct {
	t       *testing.T
	nw      *procnet.Network
	g       *chain.Genesis
	key     chain.PrivKey
	nonce   uint64
	grantee chain.Address
}

// grant submits a consent to the grantee and waits for it to commit.
func (c *honestClient) grant() uint64 {
	c.t.Helper()
	return c.submit(0, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: c.grantee, Purpose: "TREAT", Scope: chain.ConsentScope{Kind: chain.ScopeAll}})
}

// submit signs the patient's next transaction, posts it to node i with wait=commit and returns
// the height it committed at.
func (c *honestClient) submit(i int, kind chain.TxKind, body any) uint64 {
	c.t.Helper()
	c.nonce++
	tx := chain.NewTx(c.key, c.g.ChainID, kind, c.nonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	code, _, resp, err := c.nw.Request(ctx, i, http.MethodPost, "/v1/txs?wait=commit", "application/json", req)
	if err != nil {
		c.t.Fatal(err)
	}
	var out struct {
		Height uint64 `json:"height"`
	}
	if code != http.StatusOK || json.Unmarshal(resp, &out) != nil || out.Height == 0 {
		c.t.Fatalf("node%d: honest %s answered %d %s", i, kind, code, truncate(resp))
	}
	return out.Height
}
