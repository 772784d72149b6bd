package state

import (
	"crypto/sha256"

	"github.com/medledger/medledger/chain"
)

// SigCache remembers signature checks inside payloads that passed (an enrolment's
// co-signature): a transaction is checked when it arrives, when a proposer packs it and when
// every node executes its block, and each check would otherwise verify it again. A check's
// result depends on its inputs alone (key names them all), so a cache changes no outcome. The
// machine is pure: the caller supplies the cache (and its locking), or none.
type SigCache interface {
	// Verify returns nil if the check named key passed before; otherwise it runs check and
	// remembers a pass.
	Verify(key chain.Hash, check func() error) error
}

// WithSigCache returns m checking payload signatures through c.
func (m *Machine) WithSigCache(c SigCache) *Machine {
	cp := *m
	cp.sigs = c
	return &cp
}

func (m *Machine) verifySig(key chain.Hash, check func() error) error {
	if m.sigs == nil {
		return check()
	}
	return m.sigs.Verify(key, check)
}

// enrolmentKey names one enrolment co-signature check: the enroller's key, the patient's, the
// encryption key and the signature (the chain is the Machine's).
func enrolmentKey(enroller, patient chain.PubKey, b *chain.RegisterPatient) chain.Hash {
	h := sha256.New()
	h.Write(enroller[:])
	h.Write(patient[:])
	h.Write(b.EncryptionKey)
	h.Write(b.EnrollerSig[:])
	var out chain.Hash
	h.Sum(out[:0])
	return out
}
