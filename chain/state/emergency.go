package state

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// emergencyAccess opens break-glass access: an all-scope emergency consent that expires
// chain.EmergencyAccessMs after the block. Governance: the first emergency access of a provider
// in an EmergencyWindowMs window needs no one else; each further one needs a co-signature by an
// authority of the set certifying this block, other than the provider, over this access's
// window and ordinal; none beyond MaxEmergencyPerWindow. The consent records the reason code,
// whether it was co-signed, and whether the patient had revoked a consent of this provider.
func (e *executor) emergencyAccess(tx *chain.Tx, provider chain.Address, id chain.Hash, b *chain.EmergencyAccess, res *TxResult) error {
	if err := e.needProvider(provider, "signer"); err != nil {
		return err
	}
	if err := e.needPatient(b.Patient, "patient"); err != nil {
		return err
	}
	window := Window(e.h.Time, EmergencyWindowMs)
	used, err := rateCount(e.o, rateEmergency, EmergencyWindowMs, e.h.Time, provider[:])
	if err != nil {
		return err
	}
	if used >= MaxEmergencyPerWindow {
		return fmt.Errorf("state: %s already opened %d emergency accesses in this %d h window, the cap even with co-signatures",
			provider, used, EmergencyWindowMs/3_600_000)
	}
	if b.CoSigned() {
		if err := e.loadSets(); err != nil {
			return err
		}
		switch {
		case b.CoSigner == tx.Signer:
			return fmt.Errorf("state: %s co-signed its own emergency access; another authority must", provider)
		case !e.cur.Contains(b.CoSigner):
			return fmt.Errorf("state: emergency access co-signer %s is not a current authority", b.CoSigner.Short())
		}
		if err := b.VerifyCoSig(e.m.chainID, tx.Signer, window, used+1); err != nil {
			return fmt.Errorf("state: %w (window %d, ordinal %d)", err, window, used+1)
		}
	} else if used > 0 {
		return fmt.Errorf("state: %s already opened %d emergency access(es) in this %d h window; another needs an authority's co-signature",
			provider, used, EmergencyWindowMs/3_600_000)
	}
	if _, err := e.bump(rateEmergency, EmergencyWindowMs, MaxEmergencyPerWindow, provider[:]); err != nil {
		return err
	}
	pair, err := readPair(e.o, b.Patient, provider)
	if err != nil {
		return err
	}
	c := &ConsentRecord{
		Version: RecordVersion, ID: id, Patient: b.Patient, Grantee: provider, Scope: chain.ConsentScope{Kind: chain.ScopeAll},
		Purpose: b.Purpose, ExpiresMs: e.h.Time + chain.EmergencyAccessMs, GrantedHeight: e.h.Height, GrantedTime: e.h.Time,
		Emergency: true, ReasonCode: b.ReasonCode, CoSigned: b.CoSigned(), AfterRevocation: !pair.LastRevoked.IsZero(),
	}
	if err := e.addConsent(c); err != nil {
		return err
	}
	res.event(EventEmergencyAccess, "emergency access %s: %s to patient %s", id.Short(), provider, b.Patient)
	return nil
}

// EmergencyAccessesIn returns the break-glass window containing block time timeMs and how many
// emergency accesses provider opened in it. The next one is ordinal count+1: what a co-signer
// signs (chain.EmergencyAccess.CoSign) when count >= 1.
func EmergencyAccessesIn(view View, provider chain.Address, timeMs int64) (window uint64, count uint32, err error) {
	count, err = rateCount(view, rateEmergency, EmergencyWindowMs, timeMs, provider[:])
	return Window(timeMs, EmergencyWindowMs), count, err
}
