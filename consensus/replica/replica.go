package replica

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus"
)

// ErrInvalid marks errors caused by a peer's bad input: the caller drops the message and scores
// the sender. Any other error from Handle is the replica's own failure (a store error, or a
// finalized block this replica cannot execute) and must stop the node.
var ErrInvalid = errors.New("replica: invalid input")

// PeerID names the peer a message came from or goes to; the transport defines its meaning.
type PeerID string

// Config holds what a replica needs besides its store.
type Config struct {
	Genesis *chain.Genesis
	// Key is the authority's signing key; nil for a full node that verifies and follows but
	// never votes.
	Key *chain.PrivKey
	// Mempool bounds; zero means the defaults (50,000 transactions, 64 MiB).
	MempoolTxs   int
	MempoolBytes int
	// FutureBuffer bounds messages held for the next height; zero means 4,096.
	FutureBuffer int
	// SyncIntervalMs is the least time between two sync requests; zero means 500.
	SyncIntervalMs int64
}

// Output is what one call hands back to the caller: messages to send (already persisted, so
// safe to send), timeouts to schedule, and blocks committed during the call.
type Output struct {
	Broadcast []*Message
	Unicast   []Addressed
	Timeouts  []consensus.Timeout
	Committed []*chain.Block
}

// Addressed is a message for one peer.
type Addressed struct {
	To  PeerID
	Msg *Message
}

func (o *Output) merge(p Output) {
	o.Broadcast = append(o.Broadcast, p.Broadcast...)
	o.Unicast = append(o.Unicast, p.Unicast...)
	o.Timeouts = append(o.Timeouts, p.Timeouts...)
	o.Committed = append(o.Committed, p.Committed...)
}

// Replica is one node's ledger replica. It is not safe for concurrent use: the caller
// serializes calls (one goroutine in the node, one event loop in the simulation).
type Replica struct {
	cfg     Config
	chainID string
	params  chain.Params
	store   store.Store
	machine *state.Machine
	engine  *consensus.Engine
	mempool *Mempool

	current, next *chain.AuthoritySet           // sets certifying the deciding height and the one after
	validated     map[chain.Hash]*state.Outcome // executed proposals at the deciding height
	future        []future                      // messages for the next height
	lastSyncAt    int64
}

type future struct {
	from PeerID
	msg  *Message
}

// New opens a replica on st, writing genesis state if st is empty.
func New(cfg Config, st store.Store) (*Replica, error) {
	g := cfg.Genesis
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if cfg.MempoolTxs == 0 {
		cfg.MempoolTxs = 50_000
	}
	if cfg.MempoolBytes == 0 {
		cfg.MempoolBytes = 64 << 20
	}
	if cfg.FutureBuffer == 0 {
		cfg.FutureBuffer = 4096
	}
	if cfg.SyncIntervalMs == 0 {
		cfg.SyncIntervalMs = 500
	}
	r := &Replica{
		cfg: cfg, chainID: g.ChainID, params: g.Params, store: st,
		machine:   state.New(g.ChainID),
		mempool:   NewMempool(g.ChainID, cfg.MempoolTxs, cfg.MempoolBytes),
		validated: make(map[chain.Hash]*state.Outcome),
	}
	if err := r.ensureGenesis(); err != nil {
		return nil, err
	}
	start, err := r.startState()
	if err != nil {
		return nil, err
	}
	record, blocks, err := st.SignState()
	if err != nil {
		return nil, fmt.Errorf("replica: load sign state: %w", err)
	}
	if record != nil {
		if start.Signed, err = joinSignState(record, blocks); err != nil {
			return nil, fmt.Errorf("replica: sign state: %w", err)
		}
	}
	r.engine, err = consensus.New(consensus.Config{ChainID: r.chainID, Key: cfg.Key, Params: r.params}, start)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Replica) ensureGenesis() error {
	stored, err := r.store.Genesis()
	switch {
	case errors.Is(err, store.ErrNotFound):
		cs, err := r.machine.Genesis(r.cfg.Genesis)
		if err != nil {
			return err
		}
		_, err = r.store.InitGenesis(r.cfg.Genesis, cs)
		return err
	case err != nil:
		return fmt.Errorf("replica: read genesis: %w", err)
	case stored.Hash() != r.cfg.Genesis.Hash():
		return fmt.Errorf("replica: store belongs to chain %q with another genesis", stored.ChainID)
	}
	return nil
}

// startState describes the height to decide next, from the store.
func (r *Replica) startState() (consensus.Start, error) {
	var err error
	r.current, r.next, err = state.Authorities(r.store.State())
	if err != nil {
		return consensus.Start{}, fmt.Errorf("replica: authority sets: %w", err)
	}
	last := r.cfg.Genesis.TimeMs
	if h := r.store.Height(); h > 0 {
		b, err := r.store.Block(h)
		if err != nil {
			return consensus.Start{}, fmt.Errorf("replica: last block: %w", err)
		}
		last = b.Header.Time
	}
	return consensus.Start{Height: r.store.Height() + 1, Authorities: r.current, LastBlockTime: last}, nil
}

// Height is the last committed height.
func (r *Replica) Height() uint64 { return r.store.Height() }

// Store exposes the replica's store for queries.
func (r *Replica) Store() store.Store { return r.store }

// Mempool exposes the pending transactions for queries.
func (r *Replica) Mempool() *Mempool { return r.mempool }

// Authorities returns the set certifying the height being decided.
func (r *Replica) Authorities() *chain.AuthoritySet { return r.current }

// Engine exposes the consensus engine for status queries.
func (r *Replica) Engine() *consensus.Engine { return r.engine }

// Start begins (or, after a restart, resumes) consensus.
func (r *Replica) Start(now int64) (Output, error) {
	r.engine.Start(now)
	return r.drain(now)
}

// HandleTimeout fires a timeout the replica asked for earlier.
func (r *Replica) HandleTimeout(t consensus.Timeout, now int64) (Output, error) {
	r.engine.HandleTimeout(t, now)
	return r.drain(now)
}

// SubmitTx verifies tx into the mempool and hands it back for broadcast.
func (r *Replica) SubmitTx(tx *chain.Tx) (chain.Hash, Output, error) {
	h, err := r.addTx(tx, false)
	if err != nil {
		return h, Output{}, err
	}
	return h, Output{Broadcast: []*Message{{Version: MessageVersion, Tx: tx}}}, nil
}

func (r *Replica) addTx(tx *chain.Tx, verified bool) (chain.Hash, error) {
	nonce, err := state.Nonce(r.store.State(), tx.Signer.Address())
	if err != nil {
		return chain.Hash{}, err
	}
	add := r.mempool.Add
	if verified {
		add = r.mempool.AddVerified
	}
	h, err := add(tx, nonce)
	if err != nil && !errors.Is(err, ErrMempoolFull) {
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return h, err
}

// Handle processes one message from a peer, verifying its signatures. Errors wrapping ErrInvalid
// are the peer's fault.
func (r *Replica) Handle(from PeerID, m *Message, now int64) (Output, error) {
	return r.HandleInbound(Inbound{From: from, Msg: m}, now)
}

// HandleInbound is Handle for a transport's delivery: signatures already checked by this node's
// transport (in.Verified) are not checked again, so each signature costs one verification here.
func (r *Replica) HandleInbound(in Inbound, now int64) (Output, error) {
	from, m := in.From, in.Msg
	if err := m.Validate(); err != nil {
		return Output{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var out Output
	switch {
	case m.Proposal != nil:
		if err := r.verify(in, m.Proposal.VerifySig); err != nil {
			return Output{}, err
		}
		if r.deferIfFuture(from, m, m.Proposal.Height, now, &out) {
			return out, nil
		}
		err := r.validateProposal(m.Proposal, m.Block, now)
		r.engine.HandleProposal(m.Proposal, m.Block, err == nil, now)
	case m.Vote != nil:
		if err := r.verify(in, m.Vote.VerifySig); err != nil {
			return Output{}, err
		}
		if r.deferIfFuture(from, m, m.Vote.Height, now, &out) {
			return out, nil
		}
		r.engine.HandleVote(m.Vote, now)
	case m.Tx != nil:
		// A transaction already pending, or already committed, is normal gossip, not misbehaviour.
		if _, err := r.addTx(m.Tx, in.Verified); err != nil && !errors.Is(err, ErrDuplicateTx) && !errors.Is(err, ErrStaleNonce) && !errors.Is(err, ErrMempoolFull) {
			return Output{}, err
		}
		return Output{}, nil
	case m.SyncFrom != 0:
		return r.serveSync(from, m.SyncFrom)
	case len(m.SyncBlocks) > 0:
		if err := r.applySync(m, now, &out); err != nil {
			return out, err
		}
	}
	more, err := r.drain(now)
	out.merge(more)
	return out, err
}

func (r *Replica) verify(in Inbound, check func(chainID string) error) error {
	if in.Verified {
		return nil
	}
	if err := check(r.chainID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// deferIfFuture holds messages for the next height and, when peers are ahead, asks the sender for
// the blocks this replica is missing. It reports whether the message was dealt with.
func (r *Replica) deferIfFuture(from PeerID, m *Message, height uint64, now int64, out *Output) bool {
	deciding := r.engine.Height()
	if height <= deciding {
		return height < deciding // old: drop; current: let the engine have it
	}
	if height == deciding+1 && len(r.future) < r.cfg.FutureBuffer {
		r.future = append(r.future, future{from: from, msg: m}) // signatures checked already
	}
	if now-r.lastSyncAt >= r.cfg.SyncIntervalMs {
		r.lastSyncAt = now
		out.Unicast = append(out.Unicast, Addressed{To: from, Msg: &Message{Version: MessageVersion, SyncFrom: deciding}})
	}
	return true
}

func (r *Replica) serveSync(to PeerID, from uint64) (Output, error) {
	var reply Message
	reply.Version = MessageVersion
	size := 0
	for h := from; h <= r.store.Height() && len(reply.SyncBlocks) < MaxSyncBatch; h++ {
		b, err := r.store.Block(h)
		if err != nil {
			return Output{}, fmt.Errorf("replica: serve sync: %w", err)
		}
		c, err := r.store.Cert(h)
		if err != nil {
			return Output{}, fmt.Errorf("replica: serve sync: %w", err)
		}
		// Full blocks add up: stop before the reply outgrows what a peer will decode. The
		// first block always goes, and any block fits alone (chain.MaxBlockBytes).
		size += len(b.Encode()) + len(c.Encode())
		if len(reply.SyncBlocks) > 0 && size > maxSyncReplyBytes {
			break
		}
		reply.SyncBlocks = append(reply.SyncBlocks, b)
		reply.SyncCerts = append(reply.SyncCerts, c)
	}
	if len(reply.SyncBlocks) == 0 {
		return Output{}, nil
	}
	return Output{Unicast: []Addressed{{To: to, Msg: &reply}}}, nil
}

// applySync commits blocks a peer sent with their certificates. A certificate from more than two
// thirds of the height's authority set is all the proof a replica needs; the block is still
// executed and must match the header's commitments.
func (r *Replica) applySync(m *Message, now int64, out *Output) error {
	for i, b := range m.SyncBlocks {
		h := b.Header.Height
		if h < r.engine.Height() {
			continue
		}
		if h > r.engine.Height() {
			return nil // a gap: the next request fills it
		}
		cert := m.SyncCerts[i]
		if err := cert.Verify(r.chainID, r.current, h, b.Hash()); err != nil {
			return fmt.Errorf("%w: sync block %d: %w", ErrInvalid, h, err)
		}
		if err := r.validateHeader(&b.Header, now, false); err != nil {
			return fmt.Errorf("%w: sync block %d: %w", ErrInvalid, h, err)
		}
		if err := r.commit(b, cert, now, out); err != nil {
			return err
		}
	}
	return nil
}

// validateProposal checks a proposed block against this replica's chain and executes it.
func (r *Replica) validateProposal(p *chain.Proposal, b *chain.Block, now int64) error {
	if p.BlockHash != b.Hash() {
		return fmt.Errorf("replica: proposal hash does not match block")
	}
	// b.Header.Proposer may differ from p.Proposer: a round's proposer re-proposes the block it
	// saw locked in an earlier round, built by that round's proposer.
	if _, ok := r.validated[p.BlockHash]; ok {
		return nil
	}
	if err := r.validateHeader(&b.Header, now, true); err != nil {
		return err
	}
	if len(b.Txs) > int(r.params.MaxBlockTxs) {
		return fmt.Errorf("replica: block has %d transactions, limit %d", len(b.Txs), r.params.MaxBlockTxs)
	}
	if n := len(b.Encode()); n > int(r.params.MaxBlockBytes) {
		return fmt.Errorf("replica: block is %d bytes, limit %d", n, r.params.MaxBlockBytes)
	}
	outcome, err := r.machine.ApplyBlock(r.store.State(), &b.Header, b.Txs, r.mempool)
	if err != nil {
		return err
	}
	r.validated[p.BlockHash] = outcome
	return nil
}

// validateHeader checks the header's commitments to this replica's chain. checkClock bounds the
// block time by the local clock; finalized blocks from sync skip it, since their time was agreed.
func (r *Replica) validateHeader(h *chain.Header, now int64, checkClock bool) error {
	height := r.store.Height() + 1
	if h.ChainID != r.chainID || h.Height != height {
		return fmt.Errorf("replica: block %q/%d, expected %q/%d", h.ChainID, h.Height, r.chainID, height)
	}
	prevHash, prevTime := chain.ZeroHash, r.cfg.Genesis.TimeMs
	if height > 1 {
		prev, err := r.store.Block(height - 1)
		if err != nil {
			return fmt.Errorf("replica: previous block: %w", err)
		}
		prevHash, prevTime = prev.Hash(), prev.Header.Time
	}
	switch {
	case h.PrevHash != prevHash:
		return fmt.Errorf("replica: block %d previous hash %s, expected %s", height, h.PrevHash.Short(), prevHash.Short())
	case h.StateRoot != r.store.StateRoot():
		return fmt.Errorf("replica: block %d state root %s, expected %s", height, h.StateRoot.Short(), r.store.StateRoot().Short())
	case h.AuthoritiesHash != r.current.Hash() || h.NextAuthoritiesHash != r.next.Hash():
		return fmt.Errorf("replica: block %d names the wrong authority sets", height)
	case h.Time <= prevTime:
		return fmt.Errorf("replica: block %d time %d not after previous %d", height, h.Time, prevTime)
	case checkClock && h.Time > now+int64(r.params.MaxClockDriftMs):
		return fmt.Errorf("replica: block %d time %d is more than %d ms ahead of local clock %d", height, h.Time, r.params.MaxClockDriftMs, now)
	case !r.current.Contains(h.Proposer):
		return fmt.Errorf("replica: block %d proposer %s is not an authority", height, h.Proposer.Short())
	}
	return nil
}

// buildBlock packs pending transactions into a block for the engine to propose.
func (r *Replica) buildBlock(req *consensus.BlockRequest, now int64) (*chain.Block, error) {
	height := r.store.Height() + 1
	prevHash := chain.ZeroHash
	if height > 1 {
		prev, err := r.store.Block(height - 1)
		if err != nil {
			return nil, fmt.Errorf("replica: previous block: %w", err)
		}
		prevHash = prev.Hash()
	}
	h := chain.Header{
		Version: chain.HeaderVersion, ChainID: r.chainID, Height: height,
		Time: max(now, req.MinTime), PrevHash: prevHash, StateRoot: r.store.StateRoot(),
		AuthoritiesHash: r.current.Hash(), NextAuthoritiesHash: r.next.Hash(),
		Proposer: r.cfg.Key.Public(),
	}
	builder := r.machine.NewBuilder(r.store.State(), &h, r.mempool)
	budget := int(r.params.MaxBlockBytes) - chain.MaxHeaderBytes - 64
	var rejected []*chain.Tx
	for _, tx := range r.mempool.Pending(int(r.params.MaxBlockTxs)) {
		size := len(tx.Encode()) + 8
		if size > budget {
			break
		}
		if err := builder.Add(tx); err != nil {
			if errors.Is(err, state.ErrBlockFull) {
				break
			}
			// A nonce ahead of the ledger may become valid once the gap closes; anything else
			// (a used nonce, a rule the transaction breaks) never will.
			if !errors.Is(err, state.ErrNonce) || r.nonceUsed(tx) {
				rejected = append(rejected, tx)
			}
			continue
		}
		budget -= size
	}
	r.mempool.Remove(rejected)
	outcome, err := builder.Finish()
	if err != nil {
		return nil, err
	}
	b := &chain.Block{Version: chain.BlockVersion, Header: h, Txs: builder.Txs()}
	b.Header.TxRoot = chain.TxRoot(b.Txs)
	r.validated[b.Hash()] = outcome
	return b, nil
}

func (r *Replica) nonceUsed(tx *chain.Tx) bool {
	n, err := state.Nonce(r.store.State(), tx.Signer.Address())
	return err == nil && tx.Nonce <= n
}

// commit executes (or reuses the execution of) a finalized block, stores it atomically with its
// certificate and state changes, and moves consensus to the next height.
func (r *Replica) commit(b *chain.Block, cert *chain.CommitCert, now int64, out *Output) error {
	hash := b.Hash()
	outcome, ok := r.validated[hash]
	if !ok {
		var err error
		outcome, err = r.machine.ApplyBlock(r.store.State(), &b.Header, b.Txs, r.mempool)
		if err != nil {
			// More than two thirds of the authorities finalized a block this replica cannot
			// execute: its state or code differs from theirs. Stop rather than diverge.
			return fmt.Errorf("replica: finalized block %d does not execute here: %w", b.Header.Height, err)
		}
	}
	if _, err := r.store.Commit(b, cert, outcome.Changes); err != nil {
		return fmt.Errorf("replica: commit block %d: %w", b.Header.Height, err)
	}
	r.mempool.Remove(b.Txs)
	clear(r.validated)
	start, err := r.startState()
	if err != nil {
		return err
	}
	start.Busy = r.mempool.Len() > 0
	r.engine.NewHeight(start, now)
	out.Committed = append(out.Committed, b)
	return nil
}

// drain handles everything the engine has asked for, in the order that keeps the authority
// honest: persist what it signed, then hand out messages.
func (r *Replica) drain(now int64) (Output, error) {
	var out Output
	for r.engine.HasReady() {
		rd := r.engine.Ready()
		if rd.SignState != nil {
			record, blocks := splitSignState(rd.SignState)
			if err := r.store.SaveSignState(record, blocks); err != nil {
				return out, fmt.Errorf("replica: persist sign state: %w", err)
			}
		}
		for _, m := range rd.Messages {
			out.Broadcast = append(out.Broadcast, &Message{Version: MessageVersion, Proposal: m.Proposal, Block: m.Block, Vote: m.Vote})
		}
		out.Timeouts = append(out.Timeouts, rd.Timeouts...)
		for _, ev := range rd.Evidence {
			if tx := r.evidenceTx(ev); tx != nil {
				out.Broadcast = append(out.Broadcast, &Message{Version: MessageVersion, Tx: tx})
			}
		}
		if rd.NeedBlock != nil {
			b, err := r.buildBlock(rd.NeedBlock, now)
			if err != nil {
				return out, err
			}
			r.engine.Propose(b, now)
		}
		if rd.Committed != nil {
			if err := r.commit(rd.Committed.Block, rd.Committed.Cert, now, &out); err != nil {
				return out, err
			}
			if err := r.replayFuture(now, &out); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// replayFuture hands buffered next-height messages to the engine once it reaches that height.
func (r *Replica) replayFuture(now int64, out *Output) error {
	pending := r.future
	r.future = nil
	for _, f := range pending {
		more, err := r.HandleInbound(Inbound{From: f.from, Msg: f.msg, Verified: true}, now)
		if err != nil && !errors.Is(err, ErrInvalid) {
			return err
		}
		out.merge(more)
	}
	return nil
}

// evidenceTx turns observed equivocation into a ledger transaction signed by this authority.
func (r *Replica) evidenceTx(ev *chain.Evidence) *chain.Tx {
	if r.cfg.Key == nil {
		return nil
	}
	me := r.cfg.Key.Public()
	nonce, err := state.Nonce(r.store.State(), me.Address())
	if err != nil {
		return nil
	}
	tx := chain.NewTx(*r.cfg.Key, r.chainID, chain.TxEvidence, r.mempool.NextNonce(me, nonce), ev)
	if _, err := r.addTx(tx, false); err != nil {
		return nil
	}
	return tx
}

// splitSignState stores consensus's sign state as the store wants it: the blocks by hash, written
// once each, and the rest as a small record (the SignState encoded without its blocks).
//
// Interim glue: consensus will split its SignState itself; until then the replica does.
func splitSignState(s *consensus.SignState) ([]byte, []store.SignBlock) {
	rec := *s
	rec.Blocks = nil
	blocks := make([]store.SignBlock, len(s.Blocks))
	for i, b := range s.Blocks {
		blocks[i] = store.SignBlock{Hash: b.Hash(), Encode: b.Encode}
	}
	return consensus.EncodeSignState(&rec), blocks
}

// joinSignState reverses splitSignState. A record saved before the split (the whole SignState,
// blocks included) comes back with no blocks and decodes as it is.
func joinSignState(record []byte, blocks map[chain.Hash][]byte) (*consensus.SignState, error) {
	var s consensus.SignState
	if err := chain.DecodeCanonical("sign record", record, consensus.MaxSignStateBytes, &s); err != nil {
		return nil, err
	}
	if len(blocks) > 0 {
		if len(s.Blocks) > 0 {
			return nil, errors.New("replica: sign record holds blocks and names stored ones")
		}
		s.Blocks = make([]*chain.Block, 0, len(blocks))
		for h, enc := range blocks {
			b, err := chain.DecodeBlock(enc)
			if err != nil {
				return nil, fmt.Errorf("replica: sign block %s: %w", h.Short(), err)
			}
			if b.Hash() != h {
				return nil, fmt.Errorf("replica: sign block %s has hash %s", h.Short(), b.Hash().Short())
			}
			s.Blocks = append(s.Blocks, b)
		}
		slices.SortFunc(s.Blocks, func(a, b *chain.Block) int {
			ha, hb := a.Hash(), b.Hash()
			return bytes.Compare(ha[:], hb[:])
		})
	}
	// The strict decoder checks everything, the spliced blocks included.
	return consensus.DecodeSignState(consensus.EncodeSignState(&s))
}
