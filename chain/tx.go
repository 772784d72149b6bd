package chain

import (
	"fmt"
	"unicode/utf8"
)

// TxVersion is the only transaction encoding version this node understands.
const TxVersion = 1

// Size limits. A transaction's payload carries at most a few encryption keys and signatures, so
// 64 KiB is generous; the whole encoded transaction may not exceed MaxTxBytes.
const (
	MaxChainIDLen  = 64
	MaxPayloadSize = 64 << 10
	MaxTxBytes     = MaxPayloadSize + 1024
)

// TxKind names what a transaction does. The state machine gives each kind its meaning.
type TxKind uint16

// Transaction kinds. Numbers are part of the encoding: never reuse one.
const (
	// TxRegisterMember registers a member of an attested role (provider, payer, ...); it was
	// "register provider" before roles.
	TxRegisterMember   TxKind = 1
	TxRegisterPatient  TxKind = 2
	TxAuthorityPropose TxKind = 3
	TxAuthorityVote    TxKind = 4
	TxEvidence         TxKind = 5
	TxAnchorRecords    TxKind = 6
	TxConsentGrant     TxKind = 7
	TxConsentRevoke    TxKind = 8
	TxEmergencyAccess  TxKind = 9
	TxAccessLog        TxKind = 10
	TxRecordErase      TxKind = 11
	TxEraseAck         TxKind = 12
	// Roles (roles.go): 13..19.
	TxRevokeAttestation TxKind = 13
	TxRotateKeys        TxKind = 14
	TxLeave             TxKind = 15
	// Records (records.go): 20..24 (20 only, so far).
	TxAccessReceipt TxKind = 20
	// Memberships and payments (billing.go): 21..26.
	TxPlanPublish      TxKind = 21
	TxPlanRetire       TxKind = 22
	TxMembershipEnrol  TxKind = 23
	TxMembershipChange TxKind = 24
	TxMembershipCancel TxKind = 25
	TxPaymentRecord    TxKind = 26
	// Claims (claims.go): 27..31.
	TxPayerSchedule TxKind = 27
	TxCoverageSet   TxKind = 28
	TxClaimSubmit   TxKind = 29
	TxClaimDecide   TxKind = 30
	TxClaimDispute  TxKind = 31
)

// TxRegisterProvider is the former name of TxRegisterMember, kept for callers.
const TxRegisterProvider = TxRegisterMember

func (k TxKind) String() string {
	switch k {
	case TxRegisterMember:
		return "register-member"
	case TxRegisterPatient:
		return "register-patient"
	case TxAuthorityPropose:
		return "authority-propose"
	case TxAuthorityVote:
		return "authority-vote"
	case TxEvidence:
		return "evidence"
	case TxAnchorRecords:
		return "anchor-records"
	case TxConsentGrant:
		return "consent-grant"
	case TxConsentRevoke:
		return "consent-revoke"
	case TxEmergencyAccess:
		return "emergency-access"
	case TxAccessLog:
		return "access-log"
	case TxRecordErase:
		return "record-erase"
	case TxEraseAck:
		return "erase-ack"
	case TxRevokeAttestation:
		return "revoke-attestation"
	case TxRotateKeys:
		return "rotate-keys"
	case TxLeave:
		return "leave"
	case TxAccessReceipt:
		return "access-receipt"
	case TxPlanPublish:
		return "plan-publish"
	case TxPlanRetire:
		return "plan-retire"
	case TxMembershipEnrol:
		return "membership-enrol"
	case TxMembershipChange:
		return "membership-change"
	case TxMembershipCancel:
		return "membership-cancel"
	case TxPaymentRecord:
		return "payment-record"
	case TxPayerSchedule:
		return "payer-schedule"
	case TxCoverageSet:
		return "coverage-set"
	case TxClaimSubmit:
		return "claim-submit"
	case TxClaimDecide:
		return "claim-decide"
	case TxClaimDispute:
		return "claim-dispute"
	}
	return fmt.Sprintf("kind-%d", uint16(k))
}

// UsesNonce reports whether transactions of the kind carry and consume their signer's nonce.
// Every kind does but evidence: evidence carries Nonce 0 and is unique by its offence
// (EvidenceKeyOf), so that when every authority reports the same equivocation the copies that
// lose leave no nonce gap behind them.
func (k TxKind) UsesNonce() bool { return k != TxEvidence }

// IsRegistration reports whether the kind registers its signer (as a member or a patient): with
// an attestation issuer's revocations, the only transactions a signer unknown to the ledger can
// send, which a mempool may therefore put under a quota of their own.
func (k TxKind) IsRegistration() bool { return k == TxRegisterMember || k == TxRegisterPatient }

// Tx is a signed transaction, unique on the ledger so that it cannot be replayed:
//
//   - for every kind but evidence, by (Signer, Nonce): the state machine accepts only
//     Nonce == last accepted nonce of Signer + 1, and nonces start at 1;
//   - for evidence (TxKind.UsesNonce false), by its offence: it carries Nonce 0, leaves the
//     signer's nonce alone, and the state machine accepts one evidence transaction per offence
//     (chain.Evidence.Key) and refuses evidence too old to judge, so a copy or replay is refused.
//
// The chain id in the signed bytes keeps a transaction from being replayed on another network.
type Tx struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	ChainID string
	Kind    TxKind
	Signer  PubKey
	Nonce   uint64
	Payload []byte // canonical encoding of the kind's body (see txkinds.go)
	Sig     Signature
}

type txSigned struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	ChainID string
	Kind    TxKind
	Signer  PubKey
	Nonce   uint64
	Payload []byte
}

// NewTx builds and signs a transaction whose payload is the canonical encoding of body.
func NewTx(key PrivKey, chainID string, kind TxKind, nonce uint64, body any) *Tx {
	tx := &Tx{Version: TxVersion, ChainID: chainID, Kind: kind, Signer: key.Public(), Nonce: nonce, Payload: Encode(body)}
	tx.Sig = key.Sign(DomainTx, chainID, tx.SignedBytes())
	return tx
}

// SignedBytes is everything the signature covers: all fields but the signature.
func (tx *Tx) SignedBytes() []byte {
	return Encode(txSigned{Version: tx.Version, ChainID: tx.ChainID, Kind: tx.Kind, Signer: tx.Signer, Nonce: tx.Nonce, Payload: tx.Payload})
}

// Encode returns the canonical encoding.
func (tx *Tx) Encode() []byte { return Encode(tx) }

// Hash identifies the transaction (over the full encoding, signature included).
func (tx *Tx) Hash() Hash { return Sum256(tx.Encode()) }

// VerifySig checks the signature against chainID.
func (tx *Tx) VerifySig(chainID string) error {
	if tx.ChainID != chainID {
		return fmt.Errorf("chain: transaction for chain %q, this is %q", tx.ChainID, chainID)
	}
	if err := Verify(tx.Signer, DomainTx, chainID, tx.SignedBytes(), tx.Sig); err != nil {
		return fmt.Errorf("chain: transaction signature: %w", err)
	}
	return nil
}

// Validate checks everything that can be checked without state or signatures.
func (tx *Tx) Validate() error {
	if err := checkVersion("transaction", tx.Version, TxVersion); err != nil {
		return err
	}
	if err := validateChainID(tx.ChainID); err != nil {
		return err
	}
	if len(tx.Payload) > MaxPayloadSize {
		return fmt.Errorf("%w: transaction payload is %d bytes, limit %d", ErrTooLarge, len(tx.Payload), MaxPayloadSize)
	}
	switch {
	case !tx.Kind.UsesNonce() && tx.Nonce != 0:
		return fmt.Errorf("chain: %s transaction carries nonce %d, must be 0 (it is unique by its content)", tx.Kind, tx.Nonce)
	case tx.Kind.UsesNonce() && tx.Nonce == 0:
		return fmt.Errorf("chain: transaction nonce must start at 1")
	}
	return nil
}

// DecodeTx decodes and validates (without checking the signature) one transaction.
func DecodeTx(data []byte) (*Tx, error) {
	var tx Tx
	if err := decodeCanonical("transaction", data, MaxTxBytes, &tx); err != nil {
		return nil, err
	}
	if err := tx.Validate(); err != nil {
		return nil, err
	}
	return &tx, nil
}

func validateChainID(id string) error {
	if id == "" || len(id) > MaxChainIDLen || !utf8.ValidString(id) {
		return fmt.Errorf("chain: chain id must be 1..%d bytes of UTF-8, got %d bytes", MaxChainIDLen, len(id))
	}
	return nil
}

// VerifyTxSigs checks the signatures of txs against chainID, in one batch when there are
// several (about twice as fast as one by one), and returns one error per transaction, nil for
// each valid one. A failed batch is checked again one by one to tell which failed.
func VerifyTxSigs(chainID string, txs []*Tx) []error {
	errs := make([]error, len(txs))
	if len(txs) < 2 {
		for i, tx := range txs {
			errs[i] = tx.VerifySig(chainID)
		}
		return errs
	}
	bv := NewBatchVerifier()
	for i, tx := range txs {
		if tx.ChainID != chainID {
			errs[i] = fmt.Errorf("chain: transaction for chain %q, this is %q", tx.ChainID, chainID)
			continue
		}
		bv.Add(tx.Signer, DomainTx, chainID, tx.SignedBytes(), tx.Sig)
	}
	if ok, _ := bv.Verify(); ok {
		return errs
	}
	for i, tx := range txs {
		if errs[i] == nil {
			errs[i] = tx.VerifySig(chainID)
		}
	}
	return errs
}
