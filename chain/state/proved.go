package state

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// What a light client (a patient's wallet) needs to read values it proved against a header:
// the keys it asks for and decoders that make the checks get makes on stored values.

// NextSetKey is the state key of the authority set that certifies block H+2 in the state after
// block H. Header H+1 (whose StateRoot is that state) names the set's hash as
// NextAuthoritiesHash, so a client proves this key to follow a change of the set.
func NextSetKey() []byte { return append([]byte(nil), keyAfter...) }

// DecodeAuthoritySet decodes the value at NextSetKey.
func DecodeAuthoritySet(data []byte) (*chain.AuthoritySet, error) {
	var r setRecord
	if err := decodeProved("authority set", data, &r); err != nil {
		return nil, err
	}
	s := &chain.AuthoritySet{Authorities: r.Authorities}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("state: proved authority set: %w", err)
	}
	return s, nil
}

// MemberKey is the state key of member id's record (a patient's registration among them).
func MemberKey(id chain.Address) []byte { return memberKey(id) }

// DecodeMember decodes the value at MemberKey.
func DecodeMember(data []byte) (*MemberRecord, error) {
	var r MemberRecord
	if err := decodeProved("member", data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Item is one decoded patient-log item: exactly one field is set.
type Item struct {
	Record     *RecordState
	Consent    *ConsentRecord
	Access     *AccessRecord
	Receipt    *ReceiptRecord
	Membership *MembershipRecord // its Statement(header time) gives invoices and status
	Payment    *PaymentState
	Claim      *ClaimRecord
}

// Patient is the patient the item concerns; for a membership its subscriber, for a payment the
// first split's subscriber. Billing items concern several patients: Concerns says whether one
// of them is patient.
func (it *Item) Patient() chain.Address {
	switch {
	case it.Record != nil:
		return it.Record.Patient
	case it.Consent != nil:
		return it.Consent.Patient
	case it.Access != nil:
		return it.Access.Patient
	case it.Receipt != nil:
		return it.Receipt.Patient
	case it.Membership != nil:
		return it.Membership.Subscriber
	case it.Payment != nil && len(it.Payment.Splits) > 0:
		return it.Payment.Splits[0].Subscriber
	case it.Claim != nil:
		return it.Claim.Patient
	}
	return chain.Address{}
}

// Concerns reports whether the item is in patient's log: Patient for single-patient items; the
// subscriber or any member of any segment of a membership; any split's subscriber of a payment
// (payments are logged for subscribers only).
func (it *Item) Concerns(patient chain.Address) bool {
	switch {
	case it.Membership != nil:
		if it.Membership.Subscriber == patient {
			return true
		}
		for _, seg := range it.Membership.Segments {
			for _, mt := range seg.Members {
				if mt.Patient == patient {
					return true
				}
			}
		}
		return false
	case it.Payment != nil:
		for _, s := range it.Payment.Splits {
			if s.Subscriber == patient {
				return true
			}
		}
		return false
	}
	return it.Patient() == patient
}

// DecodeItem decodes the value at ItemKey(kind, id) and checks that it is the item id names.
func DecodeItem(kind LogKind, id chain.Hash, data []byte) (*Item, error) {
	var it Item
	var got chain.Hash
	switch kind {
	case LogRecord:
		it.Record = &RecordState{}
		if err := decodeProved("record", data, it.Record); err != nil {
			return nil, err
		}
		got = it.Record.ID
	case LogConsent:
		it.Consent = &ConsentRecord{}
		if err := decodeProved("consent", data, it.Consent); err != nil {
			return nil, err
		}
		got = it.Consent.ID
	case LogAccess:
		it.Access = &AccessRecord{}
		if err := decodeProved("access entry", data, it.Access); err != nil {
			return nil, err
		}
		got = it.Access.RequestID
	case LogReceipt:
		it.Receipt = &ReceiptRecord{}
		if err := decodeProved("receipt", data, it.Receipt); err != nil {
			return nil, err
		}
		got = it.Receipt.RequestID
	case LogMembership:
		it.Membership = &MembershipRecord{}
		if err := decodeProved("membership", data, it.Membership); err != nil {
			return nil, err
		}
		got = it.Membership.ID
	case LogPayment:
		it.Payment = &PaymentState{}
		if err := decodeProved("payment", data, it.Payment); err != nil {
			return nil, err
		}
		got = it.Payment.ID
	case LogClaim:
		it.Claim = &ClaimRecord{}
		if err := decodeProved("claim", data, it.Claim); err != nil {
			return nil, err
		}
		got = it.Claim.ID
	default:
		return nil, fmt.Errorf("state: unknown patient-log kind %d", uint8(kind))
	}
	if got != id {
		return nil, fmt.Errorf("state: %s stored under %s names %s", kind, id.Short(), got.Short())
	}
	return &it, nil
}

// NonceKey is the state key of the last nonce a signing key with address a used.
func NonceKey(a chain.Address) []byte { return nonceKey(a) }

// DecodeNonce decodes the value at NonceKey (nil: the key never signed).
func DecodeNonce(data []byte) (uint64, error) {
	if data == nil {
		return 0, nil
	}
	var r accountRecord
	if err := decodeProved("account", data, &r); err != nil {
		return 0, err
	}
	return r.Nonce, nil
}

// TipKey is the state key of the last block's height and time.
func TipKey() []byte { return append([]byte(nil), keyTip...) }

// KeyConcerns reports whether a wallet of patient may prove key: KeyAbout's answer, except that
// a membership or payment, which concerns several patients (Item.Concerns), may be proved by
// any of them. ok is false for a key no wallet may prove or one about another patient.
func KeyConcerns(view View, key []byte, patient chain.Address) (ok bool, err error) {
	about, public, ok, err := KeyAbout(view, key)
	if err != nil || !ok {
		return false, err
	}
	if public || about == patient {
		return true, nil
	}
	for _, c := range []struct {
		prefix string
		kind   LogKind
	}{{prefixMship, LogMembership}, {prefixPayment, LogPayment}} {
		k := string(key)
		if len(k) != len(c.prefix)+32 || k[:len(c.prefix)] != c.prefix {
			continue
		}
		data, err := view.Get(key)
		if err != nil {
			return false, fmt.Errorf("state: read %s: %w", c.kind, err)
		}
		var id chain.Hash
		copy(id[:], k[len(c.prefix):])
		it, err := DecodeItem(c.kind, id, data)
		if err != nil {
			return false, err
		}
		return it.Concerns(patient), nil
	}
	return false, nil
}

// KeyAbout says whom a state key concerns, for a node deciding what a patient's wallet may
// prove: public keys (the tip, the authority sets, a non-patient member's record) concern no
// one; a patient's member record, log head and log entries concern that patient; a record,
// consent, access entry, receipt or claim concerns the patient its stored value names, a membership
// its subscriber and a payment its first split's subscriber (KeyConcerns admits every patient
// they concern); an absent one is public: proving that an id names nothing reveals nothing. ok
// is false for every other key, which a wallet may not prove.
func KeyAbout(view View, key []byte) (patient chain.Address, public, ok bool, err error) {
	k := string(key)
	fixed := func(prefix string, n int) bool { return len(k) == len(prefix)+n && k[:len(prefix)] == prefix }
	switch {
	case k == string(keyAfter) || k == string(keyNext) || k == string(keyTip):
		return patient, true, true, nil
	case fixed(prefixMember, 20):
		copy(patient[:], k[len(prefixMember):])
		m, err := Member(view, patient)
		if err != nil {
			return chain.Address{}, false, false, err
		}
		if m == nil || m.Role != chain.RolePatient {
			return chain.Address{}, true, true, nil
		}
		return patient, false, true, nil
	case fixed(prefixNonce, 20):
		// A signing key's nonce concerns the member the key resolves to (itself, unrotated).
		var a chain.Address
		copy(a[:], k[len(prefixNonce):])
		var r signerRecord
		found, err := get(view, signerKey(a), "signer index", &r)
		if err != nil {
			return chain.Address{}, false, false, err
		}
		if found && !r.Retired {
			return r.Member, false, true, nil
		}
		return a, false, true, nil
	case fixed(prefixLogHead, 20):
		copy(patient[:], k[len(prefixLogHead):])
		return patient, false, true, nil
	case fixed(prefixLogItem, 28):
		copy(patient[:], k[len(prefixLogItem):])
		return patient, false, true, nil
	}
	for _, c := range []struct {
		prefix string
		kind   LogKind
	}{{prefixRecord, LogRecord}, {prefixConsent, LogConsent}, {prefixAccess, LogAccess}, {prefixReceipt, LogReceipt},
		{prefixMship, LogMembership}, {prefixPayment, LogPayment}, {prefixClaim, LogClaim}} {
		if !fixed(c.prefix, 32) {
			continue
		}
		data, err := view.Get(key)
		if err != nil {
			return chain.Address{}, false, false, fmt.Errorf("state: read %s: %w", c.kind, err)
		}
		if data == nil {
			return chain.Address{}, true, true, nil
		}
		var id chain.Hash
		copy(id[:], k[len(c.prefix):])
		it, err := DecodeItem(c.kind, id, data)
		if err != nil {
			return chain.Address{}, false, false, err
		}
		return it.Patient(), false, true, nil
	}
	return chain.Address{}, false, false, nil
}
