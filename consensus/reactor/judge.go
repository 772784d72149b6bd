package reactor

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
)

// route is where a payload arrived: on one of the gossip topics, which carry one kind each, or
// over the direct protocol, which carries every kind.
type route int

const (
	viaTxs route = iota
	viaProposals
	viaVotes
	viaDirect
)

func (r route) String() string {
	switch r {
	case viaTxs:
		return TopicTxs
	case viaProposals:
		return TopicProposals
	case viaVotes:
		return TopicVotes
	}
	return "direct"
}

// Gossip topics (short names, namespaced by p2p.TopicName) and their payload limits (the
// replica.Message encoding). The names are exported for peers that join the topics without a
// Reactor (the multi-process tests' compromised member).
const (
	TopicTxs       = "txs"
	TopicProposals = "proposals"
	TopicVotes     = "votes"
	// TopicVersion 2: payloads are the bare message encoding (version 1 prefixed a nonce), so
	// nodes of the two versions never judge each other's payloads.
	TopicVersion = 2
	// MaxGossipProposalBytes bounds a proposal on its topic; larger ones go directly to every
	// peer.
	MaxGossipProposalBytes = p2p.MaxGossipBytes
	// MaxGossipVoteBytes bounds a vote message (a vote encodes to under 200 bytes).
	MaxGossipVoteBytes = 1 << 10
	// MaxGossipTxBytes bounds a transaction message: the largest transaction and the wrapper.
	MaxGossipTxBytes = chain.MaxTxBytes + 1<<10
	// MaxDirectBytes is the direct protocol's frame limit the host must be configured with: the
	// largest replica message (a full block, or a sync batch).
	MaxDirectBytes = replica.MaxMessageBytes
)

// judgement is the verdict on one payload and what goes with it.
type judgement struct {
	verdict p2p.Verdict
	err     error           // why, for Reject and for some Ignores
	in      replica.Inbound // for Accept (From is filled in on delivery)
	key     chain.Hash      // the payload's hash
	height  uint64          // a proposal's or vote's height
	dedup   bool            // Ignore: delivered before
	junk    bool            // Ignore: counts towards a junk strike (see isJunk)
	// ahead is set on an Ignore for a height beyond the next: the sender is ahead of us. msg,
	// if decoded, is handed to the replica as a hint.
	ahead bool
	msg   *replica.Message
}

func accept(in replica.Inbound) judgement          { return judgement{verdict: p2p.Accept, in: in} }
func ignore(err error) judgement                   { return judgement{verdict: p2p.Ignore, err: err} }
func reject(err error) judgement                   { return judgement{verdict: p2p.Reject, err: err} }
func rejectf(f string, a ...any) judgement         { return reject(fmt.Errorf(f, a...)) }
func (j judgement) withKey(k chain.Hash) judgement { j.key = k; return j }

// judge is the typed core of every validator: the topics' and the direct protocol's. It
// answers, cheapest checks first:
//
//   - Ignore a payload delivered recently (its hash is in seen), before any decoding or
//     signature check: a re-send or a replay is the same payload, already handled.
//   - Reject what does not decode (form) or, on a topic, carries another kind than the topic's:
//     an honest peer validates before relaying, so the peer that sent it is at fault.
//   - Proposals, votes and transactions: as judgeProposal, judgeVote and judgeTx say.
//   - Accept sync requests and answers, which only arrive directly: the replica decides what
//     to do with them (it serves what it has and applies only answers it asked for, checking
//     every block against its certificate), and a malformed one fails decoding above.
func judge(gate *replica.Gate, seen *seenSet, rt route, data []byte) judgement {
	key := chain.Sum256(data)
	if seen.has(key) {
		return judgement{verdict: p2p.Ignore, dedup: true, key: key}
	}
	h, err := replica.DecodeHead(data)
	if err != nil {
		return reject(err).withKey(key)
	}
	if rt != viaDirect && routeOf(h) != rt {
		return rejectf("reactor: a %s on the %s topic", h.Kind(), rt).withKey(key)
	}
	var j judgement
	switch {
	case h.Proposal != nil:
		j = judgeProposal(gate, h, data)
	case h.Vote != nil:
		j = judgeVote(gate, h)
	case h.Tx != nil:
		j = judgeTx(gate, h)
	case len(h.Txs) > 0:
		j = judgeTxs(gate, h)
	default:
		m, err := replica.DecodeMessage(data)
		if err != nil {
			return reject(err).withKey(key)
		}
		j = accept(replica.Inbound{Msg: m})
		if len(m.SyncBlocks) > 0 {
			j.in.VerifiedTxs = preverify(gate.ChainID(), m.SyncBlocks)
		}
	}
	j.in.Size = len(data)
	switch {
	case h.Proposal != nil:
		j.height = h.Proposal.Height
	case h.Vote != nil:
		j.height = h.Vote.Height
	}
	return j.withKey(key)
}

// preverify checks the signatures of the transactions of a sync answer's blocks on every core
// (in batches), so that the replica's loop, which executes the blocks one after the other,
// does not check them one core at a time. It returns the hashes of those that verified; a bad
// one is left for the replica, whose execution of its block then fails.
func preverify(chainID string, blocks []*chain.Block) map[chain.Hash]struct{} {
	var txs []*chain.Tx
	for _, b := range blocks {
		txs = append(txs, b.Txs...)
	}
	if len(txs) == 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), (len(txs)+63)/64)
	ok := make([]bool, len(txs))
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(txs)/workers, (w+1)*len(txs)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, err := range chain.VerifyTxSigs(chainID, txs[lo:hi]) {
				ok[lo+i] = err == nil
			}
		}()
	}
	wg.Wait()
	set := make(map[chain.Hash]struct{}, len(txs))
	for i, tx := range txs {
		if ok[i] {
			set[tx.Hash()] = struct{}{}
		}
	}
	return set
}

// routeOf is the topic a message kind travels on; sync messages have none (viaDirect).
func routeOf(h *replica.Head) route {
	switch {
	case h.Tx != nil || len(h.Txs) > 0:
		return viaTxs
	case h.Proposal != nil:
		return viaProposals
	case h.Vote != nil:
		return viaVotes
	}
	return viaDirect
}

// judgeProposal judges a proposal from its signed fields and its block's header alone, with
// the Gate, before its transactions are decoded:
//
//   - Reject a proposal signed by an authority that does not propose that round, one whose
//     header lies about its proposer, chain or height or hashes to another block than the one
//     signed, and a bad signature: all are visible from the signed header, the same for every
//     node, and an honest relayer would have refused it.
//   - Ignore a proposal for an old height, for a round beyond the window, or for a height
//     beyond the next (ahead: the sender is ahead of us; we cannot judge it and do not relay
//     it), whatever its size: its block is never decoded.
//   - Accept a proposal for this height or the next (the replica buffers it) once the full
//     message decodes. A block whose transactions do not decode or do not match the header's
//     transaction root is Rejected: the proposer signed the header, and whoever delivered the
//     body with it failed to check it.
func judgeProposal(gate *replica.Gate, h *replica.Head, data []byte) judgement {
	p := h.Proposal
	v, err := gate.Proposal(p, h.Header)
	switch v {
	case replica.Reject:
		return reject(err)
	case replica.Ignore:
		j := ignore(err)
		j.ahead = gate.Ahead(p.Height)
		return j
	}
	m, err := replica.DecodeMessage(data)
	if err != nil {
		return reject(fmt.Errorf("reactor: proposal %d/%d passed its header but its block does not decode: %w", p.Height, p.Round, err))
	}
	return accept(replica.Inbound{Msg: m, Verified: true})
}

// judgeHead judges a direct payload longer than p2p.DirectHeadBytes from its first bytes, before
// the rest is read:
//
//   - A proposal whose signed fields and block header lie within them is judged by the Gate as
//     judgeProposal judges it, and Reject or Ignore is final there, so a multi-MiB proposal off
//     turn, lying about its proposer or for a far height costs neither its transfer, nor its
//     hash, nor a decode.
//   - Any other long payload can only be a sync answer (votes, transactions and sync requests
//     are short): one from a peer the replica did not ask is Ignored unread, since the replica
//     would drop it after a full decode; an honest peer answers only when asked.
//   - A head that is malformed as far as it goes is rejected (the whole payload would fail
//     DecodeHead).
//
// Everything else — a proposal the Gate accepts (its signature is checked again on the whole
// payload), an awaited sync answer, a head too short to tell — is left to judge (ok false).
func judgeHead(gate *replica.Gate, from replica.PeerID, head []byte) (j judgement, ok bool) {
	p, h, err := replica.DecodeProposalHead(head)
	switch {
	case errors.Is(err, replica.ErrShortHead):
		return judgement{}, false
	case err != nil:
		return reject(err), true
	case p == nil:
		if gate.AwaitsSync(from) {
			return judgement{}, false
		}
		return ignore(errUnasked), true
	}
	v, err := gate.Proposal(p, h)
	switch v {
	case replica.Reject:
		j = reject(err)
	case replica.Ignore:
		j = ignore(err)
		j.ahead = gate.Ahead(p.Height)
	default:
		return judgement{}, false
	}
	j.height = p.Height
	return j, true
}

// errUnasked is why a long payload other than a proposal is ignored from its head.
var errUnasked = errors.New("reactor: a long direct payload that is no proposal, from a peer not asked for blocks")

// judgeVote judges a vote with the Gate:
//
//   - Reject a vote by a signer outside the authority set of its height, or with a bad
//     signature: both hold for every node that knows that height's set.
//   - Ignore a vote for an old height (the sender is behind; the replica has what it needs),
//     and one for a height beyond the next (ahead: a hint, not relayed).
//   - Accept the rest (this height, or the next, which the replica buffers).
func judgeVote(gate *replica.Gate, h *replica.Head) judgement {
	m := &replica.Message{Version: replica.MessageVersion, Vote: h.Vote}
	v, err := gate.Vote(h.Vote)
	switch v {
	case replica.Reject:
		return reject(err)
	case replica.Ignore:
		j := ignore(err)
		if j.ahead = gate.Ahead(h.Vote.Height); j.ahead {
			j.msg = m
		}
		return j
	}
	return accept(replica.Inbound{Msg: m, Verified: true})
}

// judgeTx judges a transaction with the Gate, which applies the mempool's admission rules
// against the latest committed state:
//
//   - Reject a transaction for another chain or with a bad signature: the sender's fault.
//   - Ignore a transaction whose signer the ledger does not know (unless it registers itself),
//     whose nonce is used or beyond the window, or that the state refuses: it is neither kept
//     nor relayed, and since a peer a block ahead or behind may judge it otherwise, nobody is
//     blamed for one; the same sender's repeated junk earns strikes (see isJunk).
//   - Accept the rest, with what the Gate found, so the replica does not repeat it.
func judgeTx(gate *replica.Gate, h *replica.Head) judgement {
	v, chk, err := gate.Tx(h.Tx)
	switch v {
	case replica.Reject:
		return reject(err)
	case replica.Ignore:
		j := ignore(err)
		j.junk = isJunk(err)
		return j
	}
	return accept(replica.Inbound{Msg: &replica.Message{Version: replica.MessageVersion, Tx: h.Tx}, Verified: true, Tx: &chk})
}

// judgeTxs judges a batch of transactions as judgeTx judges each, with their signatures
// verified in one batch: the batch is rejected if any transaction would be (its sender vouched
// for a forged signature), accepted with the transactions the Gate accepted if there are any
// (gossip relays the whole batch), and ignored otherwise, as junk if any transaction was.
func judgeTxs(gate *replica.Gate, h *replica.Head) judgement {
	verdicts, chks, errs := gate.Txs(h.Txs)
	var txs []*chain.Tx
	var kept []replica.TxCheck
	junk, junks := false, 0
	var why error
	for i, v := range verdicts {
		switch v {
		case replica.Reject:
			return reject(fmt.Errorf("reactor: batch entry %d: %w", i, errs[i]))
		case replica.Ignore:
			if isJunk(errs[i]) {
				junk, junks = true, junks+1
			}
			if why == nil {
				why = errs[i]
			}
		default:
			txs, kept = append(txs, h.Txs[i]), append(kept, chks[i])
		}
	}
	if len(txs) == 0 {
		j := ignore(why)
		j.junk = junk
		return j
	}
	j := accept(replica.Inbound{Msg: &replica.Message{Version: replica.MessageVersion, Txs: txs}, Verified: true, TxChecks: kept})
	// A batch mostly of junk earns a junk strike even though some of it is kept: otherwise
	// one valid transaction would carry any amount of junk past the strikes.
	if 2*junks > len(h.Txs) {
		j.junk, j.err = true, why
	}
	return j
}

// isJunk says whether an ignored transaction counts towards a junk strike: a signer the ledger
// does not know, a nonce beyond the window, or a refusal by the state. A used nonce does not
// count (it is what a replay of a committed transaction looks like, cheap to refuse, and what a
// peer one block behind relays in good faith), nor does a failure to read our own state.
func isJunk(err error) bool {
	return errors.Is(err, replica.ErrNotMember) || errors.Is(err, replica.ErrNonceGap) || errors.Is(err, replica.ErrRefusedByState)
}
