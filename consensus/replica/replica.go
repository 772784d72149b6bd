package replica

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus"
)

// ErrInvalid marks errors caused by a peer's bad input: the caller drops the message and scores
// the sender. Any other error from Handle is the replica's own failure (a store error, or a
// finalized block this replica cannot execute) and must stop the node.
var ErrInvalid = errors.New("replica: invalid input")

// ErrHalted wraps a failure of the replica's own (a store error, a finalized block it cannot
// execute) met while handling a submission: the transaction was admitted, but the node must
// stop.
var ErrHalted = errors.New("replica: halted")

// PeerID names the peer a message came from or goes to; the transport defines its meaning.
type PeerID string

// roundWindow is the engine's: how far ahead of its round a replica looks at all.
const roundWindow = consensus.RoundWindow

// Config holds what a replica needs besides its store.
type Config struct {
	Genesis *chain.Genesis
	// Key is the authority's signing key; nil for a full node that verifies and follows but
	// never votes.
	Key     *chain.PrivKey
	Mempool MempoolConfig
	Future  FutureLimits
	// SyncIntervalMs is the least time between two sync requests unless the last answer was
	// full; zero means 500.
	SyncIntervalMs int64
}

// Output is what one call hands back to the caller: messages to send (already persisted, so
// safe to send), timeouts to schedule, blocks committed during the call, transactions that left
// the mempool without being committed, and peers to blame for invalid input found while
// handling buffered messages.
type Output struct {
	Broadcast []*Message
	// Resend are messages this replica sent before (and persisted); send them to each peer
	// directly, since gossip drops a payload it has already seen.
	Resend    []*Message
	Unicast   []Addressed
	Timeouts  []consensus.Timeout
	Committed []*chain.Block
	Dropped   []Dropped
	Penalties []Penalty
}

// Addressed is a message for one peer.
type Addressed struct {
	To  PeerID
	Msg *Message
}

// Penalty names a peer that sent invalid input, and why.
type Penalty struct {
	Peer PeerID
	Err  error
}

// Inbound is a message received from a peer, as a transport hands it to the replica.
type Inbound struct {
	From PeerID
	Msg  *Message
	// Verified says this node's transport already checked the message's signatures (its Gate
	// ran in a gossip validator), so the replica does not verify them a second time.
	Verified bool
	// Tx is what the Gate found for a transaction, so the replica does not repeat it; TxChecks
	// the same for each transaction of a batch (Msg.Txs), when the Gate judged them.
	Tx       *TxCheck
	TxChecks []TxCheck
	// VerifiedTxs holds the hashes of the transactions of a sync answer's blocks whose
	// signatures the transport already checked (in parallel, off the replica's loop).
	VerifiedTxs map[chain.Hash]struct{}
	// Size is the message's encoded size, if the transport knows it (for buffer bounds).
	Size int
}

// Replica is one node's ledger replica: the consensus engine, the state machine and the store,
// with a mempool, an execution cache, a buffer for the next height and block sync, each its own
// type. It is not safe for concurrent use: the caller serializes calls (one goroutine in the
// node, one event loop in the simulation); only Gate may be used concurrently.
type Replica struct {
	cfg     Config
	chainID string
	// consensusID is what votes, proposals and certificates are signed under (chain.ConsensusID).
	consensusID string
	params      chain.Params
	store       store.Store
	machine     *state.Machine
	engine      *consensus.Engine
	mempool     *Mempool
	// syncVerified is the transport's VerifiedTxs while a sync answer is applied.
	syncVerified map[chain.Hash]struct{}
	exec         *execCache
	future       *futureBuffer
	sync         *blockSync
	gate         *Gate

	current, next *chain.AuthoritySet // sets certifying the deciding height and the one after
	lastBlockTime int64
}

// New opens a replica on st, writing genesis state if st is empty.
func New(cfg Config, st store.Store) (*Replica, error) {
	g := cfg.Genesis
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if cfg.SyncIntervalMs == 0 {
		cfg.SyncIntervalMs = 500
	}
	r := &Replica{
		cfg: cfg, chainID: g.ChainID, consensusID: chain.ConsensusID(g.ChainID, g.Hash()), params: g.Params, store: st,
		machine: state.New(g.ChainID).WithSigCache(newSigCache()),
		mempool: NewMempool(g.ChainID, cfg.Mempool),
		exec:    newExecCache(),
		future:  newFutureBuffer(cfg.Future),
		sync:    newBlockSync(cfg.SyncIntervalMs),
	}
	r.gate = &Gate{chainID: g.ChainID, consensusID: r.consensusID, machine: r.machine, nonceWindow: r.mempool.Config().NonceWindow}
	if err := r.ensureGenesis(); err != nil {
		return nil, err
	}
	start, err := r.startState()
	if err != nil {
		return nil, err
	}
	rec, blocks, err := st.SignState()
	if err != nil {
		return nil, fmt.Errorf("replica: load sign state: %w", err)
	}
	if rec != nil {
		if start.Signed, err = consensus.DecodeSignRecord(rec, blocks); err != nil {
			return nil, fmt.Errorf("replica: sign state: %w", err)
		}
	}
	r.engine, err = consensus.New(consensus.Config{ChainID: r.consensusID, Key: cfg.Key, Params: r.params}, start)
	if err != nil {
		return nil, err
	}
	r.future.reset(start.Height + 1)
	r.publish()
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
	r.lastBlockTime = r.cfg.Genesis.TimeMs
	if h := r.store.Height(); h > 0 {
		b, err := r.store.Block(h)
		if err != nil {
			return consensus.Start{}, fmt.Errorf("replica: last block: %w", err)
		}
		r.lastBlockTime = b.Header.Time
	}
	return consensus.Start{Height: r.store.Height() + 1, Authorities: r.current, LastBlockTime: r.lastBlockTime}, nil
}

// position is the replica's current position for the cheap checks; publish hands it to the Gate.
func (r *Replica) position() *position {
	return &position{height: r.store.Height() + 1, current: r.current, next: r.next, view: r.store.State(), lastBlockTime: r.lastBlockTime}
}

func (r *Replica) publish() { r.gate.publish(r.position(), r.engine.Round()) }

// Height is the last committed height.
func (r *Replica) Height() uint64 { return r.store.Height() }

// SyncTarget is the highest committed height peers have shown this replica (a message for
// height h shows h-1 committed), or its own height if no peer showed more. It is what peers
// claim, for progress reports only: block sync verifies every block it fetches.
func (r *Replica) SyncTarget() uint64 {
	if h := r.sync.highest(); h > 0 && h-1 > r.store.Height() {
		return h - 1
	}
	return r.store.Height()
}

// Store exposes the replica's store for queries.
func (r *Replica) Store() store.Store { return r.store }

// Mempool exposes the pending transactions for queries.
func (r *Replica) Mempool() *Mempool { return r.mempool }

// Gate returns the replica's admission checks, for a transport's gossip validators.
func (r *Replica) Gate() *Gate { return r.gate }

// Authorities returns the set certifying the height being decided.
func (r *Replica) Authorities() *chain.AuthoritySet { return r.current }

// Engine exposes the consensus engine for status queries.
func (r *Replica) Engine() *consensus.Engine { return r.engine }

// Buffered reports the messages held for the next height and their encoded size.
func (r *Replica) Buffered() (messages, bytes int) { return r.future.Len(), r.future.Bytes() }

// Start begins (or, after a restart, resumes) consensus.
func (r *Replica) Start(now int64) (Output, error) {
	var out Output
	r.engine.Start(now)
	err := r.drain(now, &out)
	return out, err
}

// HandleTimeout fires a timeout the replica asked for earlier.
func (r *Replica) HandleTimeout(t consensus.Timeout, now int64) (Output, error) {
	var out Output
	r.engine.HandleTimeout(t, now)
	err := r.drain(now, &out)
	return out, err
}

// SubmitTx admits a transaction of this node's own (an API submission) into the mempool and
// hands it back for broadcast.
func (r *Replica) SubmitTx(tx *chain.Tx, now int64) (chain.Hash, Output, error) {
	h, err := r.addTx(tx, nil, false)
	if err != nil {
		return h, Output{}, err
	}
	r.mempool.MarkOwn(h, now)
	out := Output{Broadcast: []*Message{{Version: MessageVersion, Tx: tx}}}
	r.hurry(now)
	if err := r.drain(now, &out); err != nil {
		return h, out, fmt.Errorf("%w: %w", ErrHalted, err)
	}
	return h, out, nil
}

// SubmitTxs adds transactions the Gate accepted (chks[i] is what it found for txs[i]) in one
// step, and broadcasts each one admitted. It returns one hash and one error per transaction;
// the error is ErrHalted (wrapped) only if the replica stopped.
func (r *Replica) SubmitTxs(txs []*chain.Tx, chks []TxCheck, now int64) ([]chain.Hash, []error, Output, error) {
	hashes, errs := make([]chain.Hash, len(txs)), make([]error, len(txs))
	var out Output
	for i, tx := range txs {
		var chk *TxCheck
		if i < len(chks) {
			chk = &chks[i]
		}
		hashes[i], errs[i] = r.addTx(tx, chk, chk != nil)
		if errs[i] == nil {
			r.mempool.MarkOwn(hashes[i], now)
			out.Broadcast = append(out.Broadcast, &Message{Version: MessageVersion, Tx: tx})
		}
	}
	r.hurry(now)
	if err := r.drain(now, &out); err != nil {
		return hashes, errs, out, fmt.Errorf("%w: %w", ErrHalted, err)
	}
	return hashes, errs, out, nil
}

// hurry starts an idle height early when an executable transaction is pending.
func (r *Replica) hurry(now int64) {
	if r.mempool.Executable() && r.engine.Step() == consensus.StepNewHeight {
		r.engine.Hurry(now)
	}
}

// addTx admits tx by the mempool's rules against committed state. chk, if not nil, is what a
// Gate found already (signature verified, standing read, maybe checked against this state);
// verified says the signature was checked even without it.
func (r *Replica) addTx(tx *chain.Tx, chk *TxCheck, verified bool) (chain.Hash, error) {
	pos := r.position()
	a := Admission{Height: pos.height - 1, Verified: verified || chk != nil}
	if chk != nil {
		a.Member = chk.Member
	} else {
		m, err := member(pos, tx.Signer)
		if err != nil {
			return chain.Hash{}, err
		}
		a.Member = m
	}
	if chk == nil || chk.CheckedAt != pos.height {
		a.Check = r.checker(pos.view, pos.lastBlockTime)
	}
	return r.mempool.Add(tx, a)
}

// checker checks a transaction against view as the next block would execute it. Its refusals
// wrap ErrRefusedByState: the ledger's rules say no, which is nobody's misbehaviour.
func (r *Replica) checker(view state.View, blockTime int64) func(*chain.Tx) error {
	return func(tx *chain.Tx) error {
		if err := r.machine.CheckTx(view, tx, blockTime, verifiedOne(tx.Hash())); err != nil {
			return fmt.Errorf("%w: %w", ErrRefusedByState, err)
		}
		return nil
	}
}

// Refused reports whether err is a mempool refusal about this node's load or the ledger's
// state rather than the transaction's form or signature: the sender is not at fault.
func Refused(err error) bool {
	for _, e := range []error{ErrMempoolFull, ErrSignerFull, ErrRegistrationsFull, ErrDuplicateTx, ErrStaleNonce, ErrNonceGap, ErrNotMember, ErrRefusedByState} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Handle processes one message from a peer, verifying its signatures. Errors wrapping ErrInvalid
// are the peer's fault.
func (r *Replica) Handle(from PeerID, m *Message, now int64) (Output, error) {
	return r.HandleInbound(Inbound{From: from, Msg: m}, now)
}

// HandleInbound is Handle for a transport's delivery: signatures already checked by this node's
// transport (in.Verified) are not checked again, so each signature costs one verification here.
func (r *Replica) HandleInbound(in Inbound, now int64) (Output, error) {
	var out Output
	if err := r.handle(in, now, &out); err != nil {
		r.publishSync() // a bad sync answer still ends the wait for it
		return out, err
	}
	err := r.drain(now, &out)
	return out, err
}

// drain handles everything the engine has asked for, in the order that keeps the authority
// honest (persist what it signed, then hand out messages), and the buffered messages of each
// height it enters, in a loop: handling a message never recurses into handling another.
func (r *Replica) drain(now int64, out *Output) error {
	var queue []Inbound
	for {
		if r.engine.HasReady() {
			h := r.engine.Height()
			if err := r.handleReady(r.engine.Ready(), now, out); err != nil {
				return err
			}
			if r.engine.Height() != h {
				queue = append(queue, r.future.take(r.engine.Height())...)
			}
			continue
		}
		if len(queue) == 0 {
			break
		}
		in := queue[0]
		queue = queue[1:]
		if err := r.handle(in, now, out); err != nil {
			if !errors.Is(err, ErrInvalid) {
				return err
			}
			out.Penalties = append(out.Penalties, Penalty{Peer: in.From, Err: err})
		}
	}
	r.gate.round.Store(r.engine.Round())
	r.publishSync()
	return nil
}

// publishSync hands the Gate the peers asked for blocks, if that changed.
func (r *Replica) publishSync() {
	if m, ok := r.sync.awaiting(); ok {
		r.gate.awaiting.Store(&m)
	}
}

// handleReady carries out one Ready of the engine, in the order consensus.Ready prescribes.
func (r *Replica) handleReady(rd consensus.Ready, now int64, out *Output) error {
	if rd.SignState != nil && mutant != "nosignstate" {
		if err := r.store.SaveSignState(consensus.EncodeSignRecord(rd.SignState), signBlocks(rd.SignState)); err != nil {
			return fmt.Errorf("replica: persist sign state: %w", err)
		}
	}
	for _, m := range rd.Messages {
		out.Broadcast = append(out.Broadcast, &Message{Version: MessageVersion, Proposal: m.Proposal, Block: m.Block, Vote: m.Vote})
	}
	for _, m := range rd.Resends {
		out.Resend = append(out.Resend, &Message{Version: MessageVersion, Proposal: m.Proposal, Block: m.Block, Vote: m.Vote})
	}
	if rd.Announce && r.store.Height() > 0 {
		out.Resend = append(out.Resend, &Message{Version: MessageVersion, Status: r.store.Height()})
	}
	out.Timeouts = append(out.Timeouts, rd.Timeouts...)
	for _, ev := range rd.Evidence {
		r.reportEvidence(ev, out)
	}
	if rd.NeedBlock != nil {
		b, err := r.buildBlock(rd.NeedBlock, now, out)
		if err != nil {
			return err
		}
		r.engine.Propose(b, now)
	}
	if rd.Committed != nil {
		if err := r.commit(rd.Committed.Block, rd.Committed.Cert, now, out); err != nil {
			return err
		}
	}
	return nil
}

// handle judges one inbound message, cheapest checks first: its form, then where it stands
// (height, round, proposer of that round, membership), then signatures, and only then
// expensive work (executing a proposed block).
func (r *Replica) handle(in Inbound, now int64, out *Output) error {
	m := in.Msg
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch {
	case m.Proposal != nil:
		return r.handleProposal(in, now, out)
	case m.Vote != nil:
		return r.handleVote(in, now, out)
	case m.Tx != nil:
		// A transaction already pending, committed, or refused by state or load is normal
		// gossip, not misbehaviour; a bad signature or form is.
		if _, err := r.addTx(m.Tx, in.Tx, in.Verified); err != nil {
			if !Refused(err) {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			return nil
		}
		r.hurry(now)
		return nil
	case len(m.Txs) > 0:
		var invalid error
		for i, tx := range m.Txs {
			var chk *TxCheck
			if len(in.TxChecks) == len(m.Txs) {
				chk = &in.TxChecks[i]
			}
			if _, err := r.addTx(tx, chk, in.Verified); err != nil && !Refused(err) && invalid == nil {
				invalid = fmt.Errorf("%w: batch entry %d: %w", ErrInvalid, i, err)
			}
		}
		r.hurry(now)
		return invalid
	case m.SyncFrom != 0:
		return r.serveSync(in.From, m.SyncFrom, out)
	case len(m.SyncBlocks) > 0:
		r.syncVerified = in.VerifiedTxs
		defer func() { r.syncVerified = nil }()
		return r.applySync(in.From, m, now, out)
	case m.Status != 0:
		// A claim, not a proof: at worst it makes this replica ask that peer for blocks (at
		// most once per sync interval), and a peer whose answer fails is not asked again.
		if m.Status > r.store.Height() {
			r.sawAhead(in.From, m.Status+1, now, out)
		}
	}
	return nil
}

func (r *Replica) handleProposal(in Inbound, now int64, out *Output) error {
	p, b := in.Msg.Proposal, in.Msg.Block
	c, err := classifyProposal(r.position(), r.engine.Round(), roundWindow, p, &b.Header, r.chainID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch c {
	case classOld:
		return nil
	case classFar:
		r.sawAhead(in.From, p.Height, now, out)
		return nil
	}
	if have, ok := r.engine.ProposalAt(p.Round); ok && c == classNow && have == p.BlockHash {
		return nil // a re-send of the proposal this round already has
	}
	if err := r.verify(in, p.VerifySig); err != nil {
		return err
	}
	if c == classNext {
		r.buffer(in, now, out)
		return nil
	}
	if _, ok := r.engine.ProposalAt(p.Round); ok {
		// A second, different proposal by the round's proposer: the engine keeps its body only
		// if honest authorities voted for it; it is never executed here.
		r.engine.HandleProposal(p, b, false, now)
		return nil
	}
	err = r.validateProposal(p, b, now)
	r.engine.HandleProposal(p, b, err == nil, now)
	return nil
}

func (r *Replica) handleVote(in Inbound, now int64, out *Output) error {
	v := in.Msg.Vote
	c, err := classifyVote(r.position(), v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch c {
	case classOld:
		return nil
	case classFar:
		r.sawAhead(in.From, v.Height, now, out)
		return nil
	}
	if c == classNow && r.engine.HasVote(v) {
		return nil // a replay: already counted, no need to verify it again
	}
	if err := r.verify(in, v.VerifySig); err != nil {
		return err
	}
	if c == classNext {
		r.buffer(in, now, out)
		return nil
	}
	r.engine.HandleVote(v, now)
	return nil
}

// buffer keeps a message for the next height (within the buffer's bounds) and notes that its
// sender is ahead.
func (r *Replica) buffer(in Inbound, now int64, out *Output) {
	size := in.Size
	if size == 0 {
		size = len(in.Msg.Encode())
	}
	r.future.add(in, size)
	h := r.engine.Height() + 1
	r.sawAhead(in.From, h, now, out)
}

// sawAhead notes that a peer sent a message for height h above the one being decided (it has
// committed h-1 or is about to) and asks for blocks when a request is due: the decision of this
// height may have been lost, or this replica is further behind.
func (r *Replica) sawAhead(from PeerID, h uint64, now int64, out *Output) {
	r.sync.sawAhead(from, h)
	r.askForBlocks(now, false, out)
}

func (r *Replica) verify(in Inbound, check func(chainID string) error) error {
	if in.Verified {
		return nil
	}
	if err := check(r.consensusID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// signBlocks lists the blocks a sign state refers to, encoded only if the store lacks them.
func signBlocks(s *consensus.SignState) []store.SignBlock {
	out := make([]store.SignBlock, len(s.Blocks))
	for i, b := range s.Blocks {
		out[i] = store.SignBlock{Hash: b.Hash(), Encode: b.Encode}
	}
	return out
}
