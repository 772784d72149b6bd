package chain

import "fmt"

// ConsensusID is what consensus messages are signed under: votes, proposals, the precommits of
// commit certificates and the votes inside evidence. It names the chain and its genesis, so a
// network re-created with the same chain id and keys never accepts the other's votes or
// certificates. (Transactions are signed under the chain id alone.)
func ConsensusID(chainID string, genesis Hash) string { return chainID + "/" + genesis.String() }

// VoteVersion and ProposalVersion are the encodings this node understands.
const (
	VoteVersion     = 1
	ProposalVersion = 1
)

// VoteType is the consensus step a vote belongs to.
type VoteType uint8

// Vote types.
const (
	Prevote   VoteType = 1
	Precommit VoteType = 2
)

func (t VoteType) String() string {
	switch t {
	case Prevote:
		return "prevote"
	case Precommit:
		return "precommit"
	}
	return fmt.Sprintf("vote-type-%d", uint8(t))
}

// Vote is one authority's prevote or precommit for a block (or for nil: zero BlockHash) at a
// height and round.
type Vote struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Type      VoteType
	Height    uint64
	Round     uint32
	BlockHash Hash
	Authority PubKey
	Sig       Signature
}

type voteSigned struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Type      VoteType
	Height    uint64
	Round     uint32
	BlockHash Hash
}

// SignedBytes is what the authority signs. The authority's key is not in it: the key that
// verifies the signature is the authority.
func (v *Vote) SignedBytes() []byte {
	return VoteSignedBytes(v.Type, v.Height, v.Round, v.BlockHash)
}

// VoteSignedBytes builds a vote's signed bytes from its fields; commit certificates use it to
// verify precommits they store without the redundant fields.
func VoteSignedBytes(t VoteType, height uint64, round uint32, block Hash) []byte {
	return Encode(voteSigned{Version: VoteVersion, Type: t, Height: height, Round: round, BlockHash: block})
}

// Sign fills in Authority and Sig.
func (v *Vote) Sign(key PrivKey, chainID string) {
	v.Version = VoteVersion
	v.Authority = key.Public()
	v.Sig = key.Sign(DomainVote, chainID, v.SignedBytes())
}

// VerifySig checks the vote's signature.
func (v *Vote) VerifySig(chainID string) error {
	if err := Verify(v.Authority, DomainVote, chainID, v.SignedBytes(), v.Sig); err != nil {
		return fmt.Errorf("chain: %s by %s at %d/%d: %w", v.Type, v.Authority.Short(), v.Height, v.Round, err)
	}
	return nil
}

// Validate checks the vote's form.
func (v *Vote) Validate() error {
	if err := checkVersion("vote", v.Version, VoteVersion); err != nil {
		return err
	}
	if v.Type != Prevote && v.Type != Precommit {
		return fmt.Errorf("chain: unknown vote type %d", v.Type)
	}
	if v.Height == 0 {
		return fmt.Errorf("chain: vote height must be at least 1")
	}
	return nil
}

// MaxVoteBytes bounds an encoded vote.
const MaxVoteBytes = 256

// DecodeVote decodes and validates (without checking the signature) a vote.
func DecodeVote(data []byte) (*Vote, error) {
	var v Vote
	if err := decodeCanonical("vote", data, MaxVoteBytes, &v); err != nil {
		return nil, err
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// Conflicts reports whether v and o are an equivocation: the same authority signing two different
// blocks at the same height, round and step.
func (v *Vote) Conflicts(o *Vote) bool {
	return v.Authority == o.Authority && v.Type == o.Type && v.Height == o.Height && v.Round == o.Round && v.BlockHash != o.BlockHash
}

// Proposal is the round's proposer announcing the block it proposes. POLRound is -1, or the
// round in which the proposer saw more than 2/3 prevotes for this block (Tendermint's valid round).
type Proposal struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Height    uint64
	Round     uint32
	POLRound  int32
	BlockHash Hash
	Proposer  PubKey
	Sig       Signature
}

type proposalSigned struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Height    uint64
	Round     uint32
	POLRound  int32
	BlockHash Hash
}

// SignedBytes is what the proposer signs.
func (p *Proposal) SignedBytes() []byte {
	return Encode(proposalSigned{Version: p.Version, Height: p.Height, Round: p.Round, POLRound: p.POLRound, BlockHash: p.BlockHash})
}

// Sign fills in Proposer and Sig.
func (p *Proposal) Sign(key PrivKey, chainID string) {
	p.Version = ProposalVersion
	p.Proposer = key.Public()
	p.Sig = key.Sign(DomainProposal, chainID, p.SignedBytes())
}

// VerifySig checks the proposal's signature.
func (p *Proposal) VerifySig(chainID string) error {
	if err := Verify(p.Proposer, DomainProposal, chainID, p.SignedBytes(), p.Sig); err != nil {
		return fmt.Errorf("chain: proposal by %s at %d/%d: %w", p.Proposer.Short(), p.Height, p.Round, err)
	}
	return nil
}

// Validate checks the proposal's form.
func (p *Proposal) Validate() error {
	if err := checkVersion("proposal", p.Version, ProposalVersion); err != nil {
		return err
	}
	if p.Height == 0 {
		return fmt.Errorf("chain: proposal height must be at least 1")
	}
	if p.POLRound < -1 || (p.POLRound >= 0 && uint32(p.POLRound) >= p.Round) {
		return fmt.Errorf("chain: proposal POL round %d invalid for round %d", p.POLRound, p.Round)
	}
	if p.BlockHash.IsZero() {
		return fmt.Errorf("chain: proposal without a block hash")
	}
	return nil
}

// MaxProposalBytes bounds an encoded proposal (without its block).
const MaxProposalBytes = 256

// DecodeProposal decodes and validates (without checking the signature) a proposal.
func DecodeProposal(data []byte) (*Proposal, error) {
	var p Proposal
	if err := decodeCanonical("proposal", data, MaxProposalBytes, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
