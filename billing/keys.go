// Package billing is the client-side billing logic shared by the node, the CLI and the wallet:
// billing keys and the fingerprints a claim carries on the ledger (keys.go), payer schedules
// built from a fee schedule in clear (schedule.go), claims read from FHIR R4 and checked against
// what the ledger holds (claim.go), a payer's FHIR Coverage read into a CoverageSet
// (coverage.go), and FHIR R4 resources written from ledger facts (fhirout.go for memberships,
// invoices, payments and coverage; fhirclaim.go for claims).
//
// The ledger never sees a service code in clear (chain/claims.go): each code is HMAC-SHA256
// under the billing key K that a payer shares with one provider, and K reaches the provider
// sealed to its encryption key with wallet/envelope. This package computes those values; it
// writes no cryptography of its own (crypto/hmac, crypto/rand, wallet/envelope).
package billing

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// KeyLen is the length of a billing key.
const KeyLen = 32

// ErrKeyCommit: an opened billing key is not the one the schedule commits to.
var ErrKeyCommit = errors.New("billing: key does not match the schedule's key commitment")

// NewKey draws a fresh billing key from crypto/rand.
func NewKey() ([]byte, error) {
	k := make([]byte, KeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("billing: new key: %w", err)
	}
	return k, nil
}

// KeyCommit is what a schedule and every claim under it carry in place of the key: Sum256(K).
func KeyCommit(key []byte) chain.Hash { return chain.Sum256(key) }

// NormaliseCode trims the spaces around a service code. Codes are otherwise taken as written
// and are case-sensitive: CPT and HCPCS codes are upper-case ("99213", "G0438"), and folding
// case would make two codes of another system one.
func NormaliseCode(code string) string { return strings.TrimSpace(code) }

// CheckCode reports whether a (normalised) code can stand on the ledger's side of a claim: 1 to
// chain.MaxServiceCodeLen printable ASCII bytes, the rule chain applies to plan codes.
func CheckCode(code string) error {
	if code == "" || len(code) > chain.MaxServiceCodeLen {
		return fmt.Errorf("billing: service code %q must be 1..%d bytes", code, chain.MaxServiceCodeLen)
	}
	for i := 0; i < len(code); i++ {
		if code[i] < 0x20 || code[i] > 0x7e {
			return fmt.Errorf("billing: service code %q must be printable ASCII", code)
		}
	}
	return nil
}

// CodeFingerprint is HMAC-SHA256(key, code) of the normalised code: what a claim line, a fee
// entry and a plan exclusion carry.
func CodeFingerprint(key []byte, code string) chain.Hash {
	return mac(key, []byte(NormaliseCode(code)))
}

// SortedCodes returns the normalised codes sorted and without repeats.
func SortedCodes(codes []string) []string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = NormaliseCode(c)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// DupPrint is a claim's duplicate print, as the ledger requires it (chain.ClaimDupPrint): a
// hash of the patient, the service day and the codes' fingerprints under key, sorted and without
// repeats. Two claims for the same services to the same patient on the same day have the same
// print whatever the order or repetition of their lines; the ledger recomputes it from the
// claim's lines, so a provider cannot choose it.
func DupPrint(key []byte, patient chain.Address, day uint32, codes []string) chain.Hash {
	lines := make([]chain.ClaimLine, len(codes))
	for i, c := range codes {
		lines[i] = chain.ClaimLine{Code: CodeFingerprint(key, c)}
	}
	return chain.ClaimDupPrint(patient, day, lines)
}

func mac(key, msg []byte) chain.Hash {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	var h chain.Hash
	copy(h[:], m.Sum(nil))
	return h
}

// KeyContext names the schedule a sealed billing key belongs to. The envelope is bound to it
// (wallet/envelope authenticates the Context), so a key envelope cannot be replayed on another
// chain or another (payer, provider) pair's schedule.
type KeyContext struct {
	ChainID  string
	Payer    chain.Address
	Provider chain.Address
}

type keyRecord struct {
	_        struct{} `cbor:",toarray"`
	Domain   string
	Payer    chain.Address
	Provider chain.Address
}

func (kc KeyContext) envelopeContext() envelope.Context {
	id := chain.Sum256(chain.Encode(keyRecord{Domain: "medledger/billing-key/v1", Payer: kc.Payer, Provider: kc.Provider}))
	return envelope.Context{ChainID: kc.ChainID, RecordID: id}
}

// SealKey seals a billing key to a recipient's encryption key (a ledger EncryptionKey, the
// marshalled envelope.PublicKey) with wallet/envelope: the result is PayerSchedule.KeyEnvelope.
func SealKey(key, recipientEncryptionKey []byte, kc KeyContext) ([]byte, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("billing: a billing key is %d bytes, got %d", KeyLen, len(key))
	}
	pub, err := envelope.ParsePublicKey(recipientEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("billing: recipient key: %w", err)
	}
	s, err := envelope.Seal(nil, key, kc.envelopeContext(), []envelope.Recipient{{Key: pub}})
	if err != nil {
		return nil, fmt.Errorf("billing: seal key: %w", err)
	}
	out := s.Encode()
	if len(out) > chain.MaxKeyEnvelopeLen {
		return nil, fmt.Errorf("billing: key envelope of %d bytes, the ledger holds at most %d", len(out), chain.MaxKeyEnvelopeLen)
	}
	return out, nil
}

// OpenKey opens a key envelope with the recipient's private key. If commit is not zero the key
// must match it (ErrKeyCommit): a provider must not bill under a key the schedule does not name.
func OpenKey(keyEnvelope []byte, priv *envelope.PrivateKey, kc KeyContext, commit chain.Hash) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("billing: open key needs a private key")
	}
	s, err := envelope.DecodeSealed(keyEnvelope)
	if err != nil {
		return nil, fmt.Errorf("billing: key envelope: %w", err)
	}
	key, err := envelope.Open(priv, s, kc.envelopeContext())
	if err != nil {
		return nil, fmt.Errorf("billing: open key: %w", err)
	}
	if len(key) != KeyLen {
		return nil, fmt.Errorf("billing: sealed key is %d bytes, want %d", len(key), KeyLen)
	}
	if !commit.IsZero() {
		c := KeyCommit(key)
		if !bytes.Equal(c[:], commit[:]) {
			return nil, ErrKeyCommit
		}
	}
	return key, nil
}

// OpenScheduleKey opens the billing key of a schedule the payer published for the provider
// that holds priv, and checks it against the schedule's commitment.
func OpenScheduleKey(s *chain.PayerSchedule, chainID string, payer chain.Address, priv *envelope.PrivateKey) ([]byte, error) {
	return OpenKey(s.KeyEnvelope, priv, KeyContext{ChainID: chainID, Payer: payer, Provider: s.Provider}, s.KeyCommit)
}
