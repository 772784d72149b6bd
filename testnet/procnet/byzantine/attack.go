package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus"
	"github.com/medledger/medledger/consensus/reactor"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node"
)

// Sizes of what the attacker builds.
const (
	// gossipBlockBytes fills an off-turn proposal up to what its topic carries.
	gossipBlockBytes = reactor.MaxGossipProposalBytes - 16<<10
	// poolTxs registrations fill blocks (about 150 bytes each, so some 1 MB); bigger blocks
	// repeat them, which only execution would notice.
	poolTxs = 7000
	// farAhead is how far beyond the current height the direct proposals claim to be: a height
	// no honest node can judge, so each is ignored rather than rejected.
	farAhead = 1000
	// farNonce is where the nonces far beyond the ledger's start.
	farNonce = 100_000
)

// start runs job in the background until stop.
func (a *attacker) start(name string, job func(ctx context.Context)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		a.jobCtx = ctx
	}
	ctx := a.jobCtx
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		job(ctx)
		a.log.Info("byzantine: attack ended", "attack", name)
	}()
}

// stopJobs ends every background attack and waits for them.
func (a *attacker) stopJobs() {
	a.mu.Lock()
	cancel := a.cancel
	a.cancel, a.jobCtx = nil, nil
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	a.wg.Wait()
}

// newKey is a fresh signing key.
func newKey() chain.PrivKey {
	k, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return k
}

func randomHash() chain.Hash {
	var h chain.Hash
	_, _ = rand.Read(h[:])
	return h
}

// registration is a patient registration by a fresh key, enrolled with the provider key of the
// attacker's home (a compromised member's): valid and executable at once if that provider is
// registered, under its enrolment rate bound; refused by every mempool's state check if not.
func (a *attacker) registration() *chain.Tx {
	enc := randomHash()
	e := a.enroller()
	k := newKey()
	return chain.NewTx(k, a.chainID, chain.TxRegisterPatient, 1, chain.NewEnrolment(e, e.Public().Address(), a.chainID, k.Public(), enc[:]))
}

// enroller returns the home's provider key, or the authority key if the home has none.
func (a *attacker) enroller() chain.PrivKey {
	a.enrollerOnce.Do(func() {
		k, err := node.ReadKeyFile(node.Resolve(a.home, a.cfg.Records.ProviderKey))
		if err != nil {
			k = a.key
		}
		a.enrollerKey = k
	})
	return a.enrollerKey
}

// revoke is a consent revocation by key at nonce: of the right form, so only admission rules
// (unknown signer, nonce window) or execution can refuse it.
func (a *attacker) revoke(key chain.PrivKey, nonce uint64) *chain.Tx {
	return chain.NewTx(key, a.chainID, chain.TxConsentRevoke, nonce, &chain.ConsentRevoke{Consent: randomHash()})
}

// floodTxs publishes junk on the transactions topic at rate a second: gap nonces of its own
// (in the window after a gap, and far beyond it), non-registrations by fresh keys (unknown
// signers) and registrations by fresh keys (which only the global registration quota bounds).
func (a *attacker) floodTxs(args map[string]int) (any, error) {
	rate := args["rate"]
	if rate == 0 {
		rate = 1000
	}
	var txs []*chain.Tx
	for i := range args["gap"] {
		txs = append(txs, a.revoke(a.key, uint64(2+i))) // nonce 1 never comes
	}
	for i := range args["far"] {
		txs = append(txs, a.revoke(a.key, uint64(farNonce+i)))
	}
	for range args["unknown"] {
		txs = append(txs, a.revoke(newKey(), 1))
	}
	for range args["reg"] {
		txs = append(txs, a.registration())
	}
	// Interleave the kinds, so each is spread over the flood.
	mrand.Shuffle(len(txs), func(i, j int) { txs[i], txs[j] = txs[j], txs[i] })
	payloads := make([][]byte, len(txs))
	for i, tx := range txs {
		payloads[i] = (&replica.Message{Version: replica.MessageVersion, Tx: tx}).Encode()
	}
	a.start("txs", func(ctx context.Context) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per := max(1, rate/100)
		for i := 0; i < len(payloads); {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for end := min(len(payloads), i+per); i < end; i++ {
				if err := a.host().Publish(reactor.TopicTxs, payloads[i]); err != nil {
					a.counts.add("txs_dropped", 1)
					continue
				}
				a.counts.add("txs", 1)
			}
		}
	})
	return map[string]int{"txs": len(payloads)}, nil
}

// blockTxs returns the pool of registrations that fill proposed blocks, signed once.
func (a *attacker) blockTxs() []*chain.Tx {
	a.poolOnce.Do(func() {
		a.pool = make([]*chain.Tx, poolTxs)
		for i := range a.pool {
			a.pool[i] = a.registration()
		}
	})
	return a.pool
}

// fill returns transactions of about size bytes in all, from the pool, repeated if need be.
func (a *attacker) fill(size int) []*chain.Tx {
	pool := a.blockTxs()
	var out []*chain.Tx
	for total := 0; total < size; {
		tx := pool[len(out)%len(pool)]
		out = append(out, tx)
		total += len(tx.Encode()) + 3
	}
	return out
}

// proposal builds a signed proposal for h/r of a block whose header names proposer.
func (a *attacker) proposal(h uint64, r uint32, prev chain.Hash, proposer chain.PubKey, txs []*chain.Tx, root chain.Hash) []byte {
	if h > 1 && prev.IsZero() {
		prev = randomHash()
	}
	if h == 1 {
		prev = chain.Hash{}
	}
	b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: a.chainID, Height: h, Time: nowMs(), PrevHash: prev,
		TxRoot: root, Proposer: proposer,
	}, Txs: txs}
	p := &chain.Proposal{Height: h, Round: r, POLRound: -1, BlockHash: b.Hash()}
	p.Sign(a.key, a.cid)
	return (&replica.Message{Version: replica.MessageVersion, Proposal: p, Block: b}).Encode()
}

// floodProposals gossips, every interval, a fresh proposal for each round of the current height
// within the window the honest nodes look at: off turn (a full block it may not propose), or in
// its own turn a block whose header names another authority as its proposer.
func (a *attacker) floodProposals(args map[string]int) (any, error) {
	every := time.Duration(args["every"]) * time.Millisecond
	if every == 0 {
		every = 200 * time.Millisecond
	}
	txs := a.fill(gossipBlockBytes)
	root := chain.TxRoot(txs)
	a.start("proposals", func(ctx context.Context) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			h, r, prev := a.tr.position()
			set := a.tr.authorities()
			if !set.Contains(a.pub) {
				return // removed: it proposes nothing any more, in turn or not
			}
			for rr := r; rr <= r+consensus.RoundWindow; rr++ {
				kind, header, body, bodyRoot := "offturn", a.pub, txs, root
				if set.Proposer(h, rr) == a.pub {
					kind, header, body, bodyRoot = "lying", other(set, a.pub), nil, chain.TxRoot(nil)
				}
				if err := a.host().Publish(reactor.TopicProposals, a.proposal(h, rr, prev, header, body, bodyRoot)); err != nil {
					a.counts.add(kind+"_dropped", 1)
					continue
				}
				a.counts.add(kind, 1)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return map[string]int{"block_txs": len(txs)}, nil
}

// other is a member of set that is not k.
func other(set *chain.AuthoritySet, k chain.PubKey) chain.PubKey {
	for _, m := range set.Authorities {
		if m.Key != k {
			return m.Key
		}
	}
	return k
}

// floodFuture sends proposals of mib MiB for heights far ahead directly to every connected
// peer, rate a second to each: judged, none of them can be blamed on the sender (a node that
// is behind may see honest proposals from ahead), so only the cost of judging them bounds them.
func (a *attacker) floodFuture(args map[string]int) (any, error) {
	mib, rate := args["mib"], args["rate"]
	if mib == 0 {
		mib = 8
	}
	if rate == 0 {
		rate = 10
	}
	if mib<<20 > reactor.MaxDirectBytes-64<<10 {
		return nil, fmt.Errorf("future: %d MiB is over the direct limit of %d bytes", mib, reactor.MaxDirectBytes)
	}
	txs := a.fill(mib << 20)
	root := chain.TxRoot(txs)
	h, _, _ := a.tr.position()
	// A handful of distinct payloads, built once: a payload that was only judged, never
	// delivered, is judged again in full each time it arrives.
	var payloads [][]byte
	for k := range 4 {
		payloads = append(payloads, a.proposal(h+farAhead+uint64(k), 0, randomHash(), a.pub, txs, root))
	}
	a.start("future", func(ctx context.Context) {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			data := payloads[n%len(payloads)]
			for _, p := range a.peers() {
				if a.host().SendDirect(p, data) {
					a.counts.add("future", 1)
					a.counts.add("future_mib", mib)
				} else {
					a.counts.add("future_dropped", 1)
				}
			}
		}
	})
	return map[string]int{"bytes": len(payloads[0]), "block_txs": len(txs)}, nil
}

// floodSync sends sync answers nobody asked for, of mib MiB (one block with its transactions,
// and an empty certificate), directly to every connected peer, rate a second to each: an
// honest replica applies only answers it asked for, so the question is what reading them costs.
func (a *attacker) floodSync(args map[string]int) (any, error) {
	mib, rate := args["mib"], args["rate"]
	if mib == 0 {
		mib = 8
	}
	if rate == 0 {
		rate = 10
	}
	if mib<<20 > reactor.MaxDirectBytes-64<<10 {
		return nil, fmt.Errorf("sync: %d MiB is over the direct limit of %d bytes", mib, reactor.MaxDirectBytes)
	}
	txs := a.fill(mib << 20)
	h, _, prev := a.tr.position()
	b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: a.chainID, Height: h, Time: nowMs(), PrevHash: prev,
		TxRoot: chain.TxRoot(txs), Proposer: a.pub,
	}, Txs: txs}
	if h > 1 && prev.IsZero() {
		b.Header.PrevHash = randomHash()
	}
	data := (&replica.Message{Version: replica.MessageVersion, SyncBlocks: []*chain.Block{b}, SyncCerts: []*chain.CommitCert{{}}}).Encode()
	a.start("sync", func(ctx context.Context) {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, p := range a.peers() {
				if a.host().SendDirect(p, data) {
					a.counts.add("sync", 1)
				} else {
					a.counts.add("sync_dropped", 1)
				}
			}
		}
	})
	return map[string]int{"bytes": len(data)}, nil
}

// equivocation is the reply to equivocate.
type equivocation struct {
	Height uint64   `json:"height"`
	Round  uint32   `json:"round"`
	AtMs   int64    `json:"at_ms"`
	To     []string `json:"to"`
}

// equivocate signs two prevotes for the current height and round, for different blocks, and
// sends one directly to one honest peer and the other to another: no honest node receives both
// from it. It does the same for the next height, whose messages honest nodes buffer, in case
// the height moves on while the votes travel.
func (a *attacker) equivocate() (any, error) {
	ps := a.peers()
	if len(ps) < 2 {
		return nil, fmt.Errorf("equivocate: connected to %d peers, need 2", len(ps))
	}
	slices.Sort(ps)
	h, r, _ := a.tr.position()
	if !a.tr.member(a.pub) {
		return nil, errors.New("equivocate: no longer an authority")
	}
	sent := 0
	for _, hh := range []uint64{h, h + 1} {
		rr := r
		if hh > h {
			rr = 0
		}
		for i, block := range []chain.Hash{randomHash(), randomHash()} {
			v := &chain.Vote{Type: chain.Prevote, Height: hh, Round: rr, BlockHash: block}
			v.Sign(a.key, a.cid)
			if a.host().SendDirect(ps[i], (&replica.Message{Version: replica.MessageVersion, Vote: v}).Encode()) {
				sent++
			}
		}
	}
	if sent < 4 {
		return nil, fmt.Errorf("equivocate: %d of 4 votes left", sent)
	}
	a.counts.add("equivocations", 2)
	return equivocation{Height: h, Round: r, AtMs: nowMs(), To: []string{ps[0].String(), ps[1].String()}}, nil
}
