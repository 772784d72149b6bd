package billing

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// An agreement file carries a membership agreement (or a change to one) from the practice to the
// subscribing patient and back: the practice drafts it (`medledger billing agreement draft`), the
// patient reads it and signs it in their wallet (`medledger wallet billing sign`), and the
// practice submits the signed file (`medledger billing enrol` / `change`). The patient signs the
// ledger's own bytes (chain.MembershipAgreement.AgreementBytes or MembershipChange.ChangeBytes in
// chain.DomainMembership), so the practice cannot alter what was signed; the FHIR Contract in the
// file is the human-readable agreement, and its hash is what the ledger records.

// Agreement file kinds.
const (
	AgreementEnrol  = "membership-enrol"
	AgreementChange = "membership-change"
)

// MaxAgreementFileBytes bounds an agreement file.
const MaxAgreementFileBytes = 1 << 20

// AgreementFile is the JSON document exchanged between practice and patient.
type AgreementFile struct {
	Kind     string        `json:"kind"`
	ChainID  string        `json:"chain_id"`
	Practice chain.Address `json:"practice"`
	// Plan is the plan the agreement enrols in (or changes to), for the patient to read; the
	// ledger checks it against the published plan.
	Plan       chain.Plan `json:"plan"`
	PriceCents uint64     `json:"price_cents"` // per period, for all members
	// Exactly one of Agreement (enrol) and Change (change, SubscriberSig left zero) is set.
	Agreement *chain.MembershipAgreement `json:"agreement,omitempty"`
	Change    *chain.MembershipChange    `json:"change,omitempty"`
	// Subscriber is the patient who signs; SubscriberKey their signing key when they signed.
	Subscriber chain.Address `json:"subscriber"`
	// Contract is the FHIR Contract (ContractResource); Sum256 of these exact bytes is the
	// agreement's (or change's) Contract hash.
	Contract      json.RawMessage `json:"contract"`
	SubscriberKey chain.PubKey    `json:"subscriber_key,omitzero"`
	SubscriberSig string          `json:"subscriber_sig,omitempty"` // hex Ed25519 signature
}

// ContractHash is the hash the ledger records for a FHIR Contract document: of its canonical
// form (keys sorted, no insignificant space, no HTML escaping, numbers as written), so re-indenting
// or re-escaping the file on its way between practice and patient does not change it. A document
// that is not JSON hashes as its bytes (and the Contract check then fails on any change).
func ContractHash(contract []byte) chain.Hash {
	dec := json.NewDecoder(bytes.NewReader(contract))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return chain.Sum256(contract)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return chain.Sum256(contract)
	}
	return chain.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// signedBytes is what the subscriber signs for this file.
func (f *AgreementFile) signedBytes() ([]byte, error) {
	switch {
	case f.Kind == AgreementEnrol && f.Agreement != nil && f.Change == nil:
		return f.Agreement.AgreementBytes(), nil
	case f.Kind == AgreementChange && f.Change != nil && f.Agreement == nil:
		return f.Change.ChangeBytes(), nil
	}
	return nil, fmt.Errorf("billing: agreement file of kind %q must carry exactly its agreement or change", f.Kind)
}

// Check verifies the file's internal consistency (not the signature): the form of the
// agreement or change, that it names the plan the file shows, and that the Contract hash is that
// of the Contract in the file.
func (f *AgreementFile) Check() error {
	if _, err := f.signedBytes(); err != nil {
		return err
	}
	if f.ChainID == "" {
		return errors.New("billing: agreement file without a chain id")
	}
	if err := f.Plan.Validate(); err != nil {
		return fmt.Errorf("billing: agreement file plan: %w", err)
	}
	if len(f.Contract) == 0 {
		return errors.New("billing: agreement file without its Contract")
	}
	var plan, contract chain.Hash
	if f.Agreement != nil {
		if err := f.Agreement.Validate(); err != nil {
			return err
		}
		if f.Agreement.Subscriber != f.Subscriber {
			return errors.New("billing: the file's subscriber is not the agreement's")
		}
		plan, contract = f.Agreement.Plan, f.Agreement.Contract
	} else {
		if err := f.Change.Validate(); err != nil {
			return err
		}
		plan, contract = f.Change.Plan, f.Change.Contract
	}
	if plan != f.Plan.ID {
		return fmt.Errorf("billing: the agreement names plan %s, the file shows plan %s", plan.Short(), f.Plan.ID.Short())
	}
	if contract != ContractHash(f.Contract) {
		return errors.New("billing: the Contract in the file is not the one the agreement names")
	}
	return nil
}

// Sign checks the file and signs it as the subscriber with key (the patient's current signing
// key, whose address or member id is the file's Subscriber: the ledger checks the key).
func (f *AgreementFile) Sign(key chain.PrivKey) error {
	if err := f.Check(); err != nil {
		return err
	}
	msg, _ := f.signedBytes()
	sig := key.Sign(chain.DomainMembership, f.ChainID, msg)
	f.SubscriberKey = key.Public()
	f.SubscriberSig = hex.EncodeToString(sig[:])
	return nil
}

// Signature returns the subscriber's signature after verifying it against SubscriberKey.
func (f *AgreementFile) Signature() (chain.Signature, error) {
	var sig chain.Signature
	if f.SubscriberSig == "" {
		return sig, errors.New("billing: the agreement is not signed by the subscriber yet (medledger wallet billing sign)")
	}
	raw, err := hex.DecodeString(f.SubscriberSig)
	if err != nil || len(raw) != len(sig) {
		return sig, errors.New("billing: the subscriber's signature is not a hex Ed25519 signature")
	}
	copy(sig[:], raw)
	msg, err := f.signedBytes()
	if err != nil {
		return sig, err
	}
	if err := chain.Verify(f.SubscriberKey, chain.DomainMembership, f.ChainID, msg, sig); err != nil {
		return sig, fmt.Errorf("billing: the subscriber's signature: %w", err)
	}
	return sig, nil
}

// ParseAgreementFile decodes and checks an agreement file.
func ParseAgreementFile(data []byte) (*AgreementFile, error) {
	if len(data) > MaxAgreementFileBytes {
		return nil, fmt.Errorf("billing: agreement file of %d bytes, limit %d", len(data), MaxAgreementFileBytes)
	}
	var f AgreementFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("billing: agreement file: %w", err)
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	return &f, nil
}
