package state

import (
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Rules of membership: registration, enrolment, revocation, key rotation, leaving, and the
// automatic removal proposal for an authority whose provider registration stopped being active.
// The records and queries they write are in members.go.

// Event types of membership transactions and of the block itself (Outcome.BlockEvents).
const (
	EventMemberRegistered   = "member-registered"
	EventAttestationRevoked = "attestation-revoked"
	EventKeysRotated        = "keys-rotated"
	EventMemberLeft         = "member-left"
	EventAutoProposal       = "authority-removal-proposed-automatically"
)

// resolveSigner maps a transaction's signing key to the member id it acts as: one point read of
// the signer index. A key rotated away is refused outright.
func (e *executor) resolveSigner(key chain.PubKey) (chain.Address, error) {
	id, retired, err := ResolveSigner(e.o, key)
	if err != nil {
		return chain.Address{}, err
	}
	if retired {
		return chain.Address{}, fmt.Errorf("state: signing key %s was rotated away and signs for nobody", key.Short())
	}
	return id, nil
}

// isIssuer reports whether key is a genesis issuer of role's attestations (loadSets and
// loadIssuers ran).
func (e *executor) isIssuer(role chain.Role, key chain.PubKey) (bool, error) {
	if role == chain.RoleProvider {
		return e.licensing.Contains(key), nil
	}
	return IsIssuer(e.o, role, key)
}

// freshRegistrant refuses a registration whose signer already has an identity: a key some member
// rotated to (it resolves to another id) or an id already registered (one registration per
// address, whatever became of it).
func (e *executor) freshRegistrant(tx *chain.Tx, id chain.Address) error {
	if id != tx.Signer.Address() {
		return fmt.Errorf("state: signing key %s already signs for member %s", tx.Signer.Short(), id)
	}
	found, err := exists(e.o, memberKey(id), "member")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: %s already registered (one registration per address)", id)
	}
	return nil
}

func (e *executor) registerMember(tx *chain.Tx, id chain.Address, b *chain.RegisterMember, res *TxResult) error {
	l := &b.Licence
	if l.Subject != tx.Signer {
		return fmt.Errorf("state: licence subject %s is not the signer %s", l.Subject.Short(), tx.Signer.Short())
	}
	ok, err := e.isIssuer(l.Role, l.Issuer)
	if err != nil {
		return err
	}
	if !ok {
		if l.Role == chain.RoleProvider {
			return fmt.Errorf("state: licence issuer %s is not a licensing authority", l.Issuer.Short())
		}
		return fmt.Errorf("state: licence issuer %s is not an issuer for role %s named in genesis", l.Issuer.Short(), l.Role)
	}
	if l.NotAfter <= e.h.Time {
		return fmt.Errorf("state: licence %q expired at %d (block time %d)", l.Number, l.NotAfter, e.h.Time)
	}
	if err := l.VerifySig(e.m.chainID); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := e.freshRegistrant(tx, id); err != nil {
		return err
	}
	bound, err := exists(e.o, nodeIndexKey(l.NodeKey), "node index")
	if err != nil {
		return err
	}
	if bound {
		return fmt.Errorf("state: node key %s is already bound to a member", l.NodeKey.Short())
	}
	if err := e.listRole(l.Role, RoleEntry{ID: id, NotAfter: l.NotAfter}); err != nil {
		return err
	}
	e.o.Set(nodeIndexKey(l.NodeKey), chain.Encode(&nodeRecord{Version: RecordVersion, Member: id}))
	e.writeMember(&MemberRecord{
		Version: RecordVersion, ID: id, Role: l.Role, Key: tx.Signer, EncryptionKey: b.EncryptionKey, NodeKey: l.NodeKey,
		Licence: *l, RegisteredHeight: e.h.Height, RegisteredTime: e.h.Time,
	})
	if l.Role == chain.RoleProvider {
		res.event(EventProviderRegistered, "provider %s", id)
	} else {
		res.event(EventMemberRegistered, "%s %s", l.Role, id)
	}
	return nil
}

func (e *executor) registerPatient(tx *chain.Tx, id chain.Address, b *chain.RegisterPatient, res *TxResult) error {
	if err := e.freshRegistrant(tx, id); err != nil {
		return err
	}
	enroller, err := activeProvider(e.o, b.Enroller, e.h.Time)
	if err != nil {
		return fmt.Errorf("state: enroller: %w", trimState(err))
	}
	check := func() error { return b.VerifyEnrolment(enroller.Key, e.m.chainID, tx.Signer) }
	if err := e.m.verifySig(enrolmentKey(enroller.Key, tx.Signer, b), check); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	limit, windowMs := e.params.EnrolmentQuota()
	var c enrolRecord
	if _, err := get(e.o, enrolKey(b.Enroller), "enrolment counter", &c); err != nil {
		return err
	}
	if w := enrolWindow(e.h.Time, windowMs); c.Window != w {
		c = enrolRecord{Window: w}
	}
	if c.Count >= limit {
		return fmt.Errorf("state: provider %s already enrolled %d patients in this %d ms window, the limit", b.Enroller, c.Count, windowMs)
	}
	c.Version, c.Count = RecordVersion, c.Count+1
	e.o.Set(enrolKey(b.Enroller), chain.Encode(&c))
	e.writeMember(&MemberRecord{
		Version: RecordVersion, ID: id, Role: chain.RolePatient, Key: tx.Signer, EncryptionKey: b.EncryptionKey,
		Enroller: b.Enroller, RegisteredHeight: e.h.Height, RegisteredTime: e.h.Time,
	})
	res.event(EventPatientRegistered, "patient %s enrolled by %s", id, b.Enroller)
	return nil
}

// revokeAttestation: an issuer of the role withdraws a member's attestation, from this block's
// time on. Issuers are not members; what bounds them is that genesis names them.
func (e *executor) revokeAttestation(tx *chain.Tx, b *chain.RevokeAttestation, res *TxResult) error {
	ok, err := e.isIssuer(b.Role, tx.Signer)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("state: %s is not an issuer for role %s named in genesis", tx.Signer.Short(), b.Role)
	}
	m, err := Member(e.o, b.Subject)
	if err != nil {
		return err
	}
	switch {
	case m == nil:
		return fmt.Errorf("state: no member %s", b.Subject)
	case m.Role != b.Role:
		return fmt.Errorf("state: member %s is a %s, not a %s", b.Subject, m.Role, b.Role)
	case m.Left:
		return fmt.Errorf("state: member %s left at height %d", b.Subject, m.LeftHeight)
	case m.Revoked:
		return fmt.Errorf("state: %s's attestation already revoked at height %d", b.Subject, m.RevokedHeight)
	}
	m.Revoked, m.RevokedHeight, m.RevokedTime, m.RevokeReason = true, e.h.Height, e.h.Time, b.Reason
	if err := e.unlistRole(m.Role, m.ID); err != nil {
		return err
	}
	e.writeMember(m)
	res.event(EventAttestationRevoked, "%s %s revoked (%s) by %s", m.Role, m.ID, b.Reason, tx.Signer.Short())
	return nil
}

// rotateKeys replaces an active member's node, encryption and/or signing key.
func (e *executor) rotateKeys(tx *chain.Tx, id chain.Address, b *chain.RotateKeys, res *TxResult) error {
	m, err := Member(e.o, id)
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("state: %s is not a member", id)
	}
	if !m.ActiveAt(e.h.Time) {
		return fmt.Errorf("state: member %s is not active (left, revoked or lapsed): it cannot rotate keys", id)
	}
	if b.NodeKey != (chain.PubKey{}) {
		if m.Role == chain.RolePatient {
			return fmt.Errorf("state: a patient has no node key")
		}
		if b.NodeKey == m.NodeKey {
			return fmt.Errorf("state: node key %s is already the member's", b.NodeKey.Short())
		}
		bound, err := exists(e.o, nodeIndexKey(b.NodeKey), "node index")
		if err != nil {
			return err
		}
		if bound {
			return fmt.Errorf("state: node key %s is already bound to a member", b.NodeKey.Short())
		}
		e.o.Delete(nodeIndexKey(m.NodeKey))
		e.o.Set(nodeIndexKey(b.NodeKey), chain.Encode(&nodeRecord{Version: RecordVersion, Member: id}))
		m.NodeKey = b.NodeKey
	}
	if len(b.EncryptionKey) > 0 {
		m.EncryptionKey = b.EncryptionKey
	}
	if b.SigningKey != (chain.PubKey{}) {
		if err := e.rotateSigningKey(tx, id, b); err != nil {
			return err
		}
		m.Key = b.SigningKey
	}
	e.writeMember(m)
	res.event(EventKeysRotated, "member %s", id)
	return nil
}

// rotateSigningKey moves id's signing key to b.SigningKey. The new key must never have signed
// anything (so its nonces start fresh without a replay) and prove possession; the old key is
// retired. Authorities do not rotate signing keys: the set names keys, so an authority is
// removed and added again under its new key instead.
func (e *executor) rotateSigningKey(tx *chain.Tx, id chain.Address, b *chain.RotateKeys) error {
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return err
	}
	for _, k := range []chain.PubKey{tx.Signer, b.SigningKey} {
		if e.cur.Contains(k) || pending.Contains(k) {
			return fmt.Errorf("state: %s is an authority key: remove the authority and add it again under its new key", k.Short())
		}
	}
	if b.SigningKey == tx.Signer {
		return fmt.Errorf("state: the new signing key is the current one")
	}
	if err := b.VerifyProof(e.m.chainID, tx.Signer.Address()); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	na := b.SigningKey.Address()
	for _, k := range [][]byte{signerKey(na), memberKey(na), nonceKey(na)} {
		used, err := exists(e.o, k, "key use")
		if err != nil {
			return err
		}
		if used {
			return fmt.Errorf("state: the new signing key %s has been used on the ledger before", b.SigningKey.Short())
		}
	}
	e.o.Set(signerKey(tx.Signer.Address()), chain.Encode(&signerRecord{Version: RecordVersion, Retired: true}))
	e.o.Set(signerKey(na), chain.Encode(&signerRecord{Version: RecordVersion, Member: id}))
	return nil
}

// leave ends a membership: the record stays, marked, so the id is never reused; the node key is
// unbound and the member leaves its role's list.
func (e *executor) leave(tx *chain.Tx, id chain.Address, res *TxResult) error {
	m, err := Member(e.o, id)
	if err != nil {
		return err
	}
	switch {
	case m == nil:
		return fmt.Errorf("state: %s is not a member", id)
	case m.Left:
		return fmt.Errorf("state: member %s already left at height %d", id, m.LeftHeight)
	}
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return err
	}
	if e.cur.Contains(tx.Signer) || pending.Contains(tx.Signer) {
		return fmt.Errorf("state: %s is an authority: it must be removed from the set before it leaves", tx.Signer.Short())
	}
	m.Left, m.LeftHeight = true, e.h.Height
	if m.Role.Attested() {
		if err := e.unlistRole(m.Role, id); err != nil {
			return err
		}
		e.o.Delete(nodeIndexKey(m.NodeKey))
	}
	e.o.Delete(enrolKey(id))
	e.writeMember(m)
	res.event(EventMemberLeft, "%s %s", m.Role, id)
	return nil
}

func (e *executor) writeMember(m *MemberRecord) { e.o.Set(memberKey(m.ID), chain.Encode(m)) }

// listRole adds a member to its role's list, refusing beyond MaxMembersPerRole.
func (e *executor) listRole(role chain.Role, en RoleEntry) error {
	r, err := readRole(e.o, role)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(r.Members, en.ID, func(x RoleEntry, id chain.Address) int { return compareAddr(x.ID, id) })
	if found {
		return fmt.Errorf("state: %s already listed as a %s (state corrupt?)", en.ID, role)
	}
	if len(r.Members) >= MaxMembersPerRole {
		return fmt.Errorf("state: the network already has %d members of role %s, the limit", len(r.Members), role)
	}
	r.Members = slices.Insert(r.Members, i, en)
	e.o.Set(roleKey(role), chain.Encode(r))
	return nil
}

func (e *executor) unlistRole(role chain.Role, id chain.Address) error {
	r, err := readRole(e.o, role)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(r.Members, id, func(x RoleEntry, id chain.Address) int { return compareAddr(x.ID, id) })
	if !found {
		return nil // already off the list (revoked, then leaving)
	}
	r.Members = slices.Delete(r.Members, i, i+1)
	if len(r.Members) == 0 {
		e.o.Delete(roleKey(role))
	} else {
		e.o.Set(roleKey(role), chain.Encode(r))
	}
	return nil
}

// autoRemove files, once per subject, a removal proposal for every authority of the pending set
// whose provider registration exists and is no longer active at this block's time (lapsed,
// revoked or left). The set has at most chain.MaxAuthorities members, so this is a bounded
// number of point reads per block. An authority with no provider registration (a genesis
// authority that never registered) is left alone. The remaining authorities only have to vote.
func (e *executor) autoRemove() ([]Event, error) {
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return nil, err
	}
	auto, err := readAuto(e.o)
	if err != nil {
		return nil, err
	}
	// Entries past their last voting height go; the expiry index deletes their proposals.
	n := len(auto.Open)
	auto.Open = slices.DeleteFunc(auto.Open, func(a AutoProposal) bool { return a.ExpiresHeight < e.h.Height })
	changed := n != len(auto.Open)
	var events []Event
	for _, a := range pending.Authorities {
		i, open := slices.BinarySearchFunc(auto.Open, a.Key, func(x AutoProposal, k chain.PubKey) int { return compareKeys(x.Subject, k) })
		if open || pending.Size() <= 1 {
			continue
		}
		m, err := MemberByKey(e.o, a.Key)
		if err != nil {
			return nil, err
		}
		if m == nil || m.Role != chain.RoleProvider || m.ActiveAt(e.h.Time) {
			continue
		}
		id := chain.Sum256(chain.Encode([]any{"medledger/auto-remove/v1", a.Key, e.h.Height}))
		p := &ProposalRecord{
			Version: RecordVersion, ID: id, Action: chain.AuthorityRemove, Subject: a,
			OpenedHeight: e.h.Height, ExpiresHeight: e.h.Height + ProposalLifetime, Status: ProposalOpen, Automatic: true,
		}
		e.o.Set(proposalKey(id), chain.Encode(p))
		if err := e.expireAt(p.ExpiresHeight, proposalKey(id)); err != nil {
			return nil, err
		}
		auto.Open = slices.Insert(auto.Open, i, AutoProposal{Subject: a.Key, ID: id, ExpiresHeight: p.ExpiresHeight})
		changed = true
		events = append(events, Event{Type: EventAutoProposal, Detail: fmt.Sprintf("proposal %s: remove %s (provider %s no longer active), open until height %d",
			id.Short(), a.Key.Short(), m.ID, p.ExpiresHeight)})
	}
	if changed {
		e.writeAuto(auto)
	}
	return events, nil
}

// closeAuto drops a closed automatic proposal from the open list.
func (e *executor) closeAuto(p *ProposalRecord) error {
	if !p.Automatic || p.Status == ProposalOpen {
		return nil
	}
	auto, err := readAuto(e.o)
	if err != nil {
		return err
	}
	auto.Open = slices.DeleteFunc(auto.Open, func(a AutoProposal) bool { return a.ID == p.ID })
	e.writeAuto(auto)
	return nil
}

func (e *executor) writeAuto(r *autoRecord) {
	if len(r.Open) == 0 {
		e.o.Delete(keyAuto)
		return
	}
	e.o.Set(keyAuto, chain.Encode(r))
}

// trimState drops the "state: " prefix of an error that gets context in front of it.
func trimState(err error) error { return &reasonError{err: err} }

// needRole puts the role a party plays in front of activeProvider's or activePatient's refusal.
func (e *executor) needRole(err error, role string) error {
	if _, refused := err.(*notActiveError); refused {
		return &reasonError{prefix: "state: " + role + " ", err: err}
	}
	return err
}

// providerByKey returns the id of the active provider whose current signing key is key (for keys
// that sign outside transactions, such as access requests): a key rotated away names nobody.
func (e *executor) providerByKey(key chain.PubKey, role string) (chain.Address, error) {
	id, retired, err := ResolveSigner(e.o, key)
	if err != nil {
		return chain.Address{}, err
	}
	if retired {
		return chain.Address{}, fmt.Errorf("state: %s key %s was rotated away", role, key.Short())
	}
	m, err := activeProvider(e.o, id, e.h.Time)
	if err != nil {
		return chain.Address{}, e.needRole(err, role)
	}
	if m.Key != key {
		return chain.Address{}, fmt.Errorf("state: %s key %s is not provider %s's current key", role, key.Short(), id)
	}
	return id, nil
}
