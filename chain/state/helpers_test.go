package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/medledger/medledger/chain"
)

const testChain = "medledger-test"

// memView is committed state in memory: the test twin of the store's state tree.
type memView struct{ m map[string][]byte }

func newMemView() *memView { return &memView{m: make(map[string][]byte)} }

func (v *memView) Get(key []byte) ([]byte, error) {
	if b, ok := v.m[string(key)]; ok {
		return slices.Clone(b), nil
	}
	return nil, nil
}

func (v *memView) commit(cs ChangeSet) {
	for _, c := range cs.Changes {
		if c.Delete {
			delete(v.m, string(c.Key))
		} else {
			v.m[string(c.Key)] = slices.Clone(c.Value)
		}
	}
}

func (v *memView) clone() *memView { return &memView{m: maps.Clone(v.m)} }

// failView fails every read, to check that storage errors surface as errors.
type failView struct{}

func (failView) Get([]byte) ([]byte, error) { return nil, errors.New("disk on fire") }

// testKey derives a deterministic key from a label.
func testKey(t testing.TB, label string) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256([]byte("state-test/" + label))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// net is a test network: a machine, committed state and the keys that matter.
type net struct {
	t    testing.TB
	m    *Machine
	view *memView
	auth []chain.PrivKey // genesis authorities, in key order
	lic  chain.PrivKey   // the licensing authority
	// enroller is a provider written into state at genesis (registered at height 0, licence
	// valid for ever) that co-signs patientTx registrations.
	enroller chain.PrivKey
	height   uint64
	time     int64
	nonces   map[chain.PubKey]uint64
	cid      string // what votes are signed under: chain.ConsensusID of the genesis
}

const genesisTime = 1_700_000_000_000

func newNet(t testing.TB, nAuth int) *net {
	t.Helper()
	n := &net{t: t, m: New(testChain), view: newMemView(), lic: testKey(t, "licensing"), enroller: testKey(t, "enroller"),
		time: genesisTime, nonces: map[chain.PubKey]uint64{}}
	var members []chain.Authority
	for i := range nAuth {
		k := testKey(t, "authority-"+string(rune('a'+i)))
		n.auth = append(n.auth, k)
		members = append(members, chain.Authority{Key: k.Public(), Name: "hospital " + string(rune('A'+i))})
	}
	slices.SortFunc(n.auth, func(a, b chain.PrivKey) int { k1, k2 := a.Public(), b.Public(); return bytes.Compare(k1[:], k2[:]) })
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: testChain, TimeMs: genesisTime, Authorities: members,
		LicensingAuthorities: []chain.Authority{{Key: n.lic.Public(), Name: "state medical board"}},
		Issuers:              []chain.Issuer{{Role: chain.RolePharmacy, Key: testKey(t, "pharmacy board").Public(), Name: "pharmacy board"}},
		Params:               chain.DefaultParams(),
	}
	// Tests register patients by the thousand; the rate bound has its own test.
	g.Params.EnrolmentsPerWindow = 1 << 30
	n.cid = chain.ConsensusID(testChain, g.Hash())
	cs, err := n.m.Genesis(g)
	if err != nil {
		t.Fatal(err)
	}
	n.view.commit(cs)
	n.injectProvider(n.enroller)
	return n
}

// injectProvider writes a provider into state directly, as registration would (member record,
// node index, role list), with a licence that never lapses: a fixture for tests that need an
// enroller without spending a block on it.
func (n *net) injectProvider(k chain.PrivKey) {
	n.t.Helper()
	id := k.Public().Address()
	l := n.licence(k.Public(), n.lic, 1<<62)
	m := &MemberRecord{Version: RecordVersion, ID: id, Role: chain.RoleProvider, Key: k.Public(), EncryptionKey: encKey(k), NodeKey: l.NodeKey, Licence: l}
	n.view.m[string(memberKey(id))] = chain.Encode(m)
	n.view.m[string(nodeIndexKey(l.NodeKey))] = chain.Encode(&nodeRecord{Version: RecordVersion, Member: id})
	r, err := readRole(n.view, chain.RoleProvider)
	if err != nil {
		n.t.Fatal(err)
	}
	i, _ := slices.BinarySearchFunc(r.Members, id, func(x RoleEntry, id chain.Address) int { return compareAddr(x.ID, id) })
	r.Members = slices.Insert(r.Members, i, RoleEntry{ID: id, NotAfter: l.NotAfter})
	n.view.m[string(roleKey(chain.RoleProvider))] = chain.Encode(r)
}

func (n *net) header() *chain.Header {
	return &chain.Header{Version: chain.HeaderVersion, ChainID: testChain, Height: n.height + 1, Time: n.time + 1000}
}

// apply executes a block and commits it, failing the test on error.
func (n *net) apply(txs ...*chain.Tx) *Outcome {
	n.t.Helper()
	out, err := n.try(txs...)
	if err != nil {
		n.t.Fatalf("block %d: %v", n.height+1, err)
	}
	return out
}

// try executes a block and commits it only if it is valid.
func (n *net) try(txs ...*chain.Tx) (*Outcome, error) {
	h := n.header()
	out, err := n.m.ApplyBlock(n.view, h, txs, nil)
	if err != nil {
		return nil, err
	}
	if err := out.Changes.Validate(); err != nil {
		n.t.Fatal(err)
	}
	n.view.commit(out.Changes)
	n.height, n.time = h.Height, h.Time
	return out, nil
}

// nonce hands out the next nonce of a key (the test's view of what the ledger will accept).
func (n *net) nonce(k chain.PrivKey) uint64 {
	n.nonces[k.Public()]++
	return n.nonces[k.Public()]
}

// patientTx registers k as a patient enrolled by n.enroller.
func (n *net) patientTx(k chain.PrivKey) *chain.Tx {
	return n.enrolTx(k, n.enroller)
}

// enrolment is a patient registration body for k with encryption key enc, co-signed by the
// enroller every newNet injects (testKey "enroller").
func enrolment(_ testing.TB, k chain.PrivKey, enc []byte) *chain.RegisterPatient {
	seed := sha256.Sum256([]byte("state-test/enroller")) // testKey(t, "enroller")
	e, _ := chain.PrivKeyFromSeed(seed[:])
	return chain.NewEnrolment(e, e.Public().Address(), testChain, k.Public(), enc)
}

// enrolTx registers k as a patient enrolled by provider enroller (whose id is its key's address).
func (n *net) enrolTx(k, enroller chain.PrivKey) *chain.Tx {
	body := chain.NewEnrolment(enroller, enroller.Public().Address(), testChain, k.Public(), encKey(k))
	return chain.NewTx(k, testChain, chain.TxRegisterPatient, n.nonce(k), body)
}

// nodeKeyOf is the (made-up) libp2p key of subject's node.
func nodeKeyOf(subject chain.PubKey) chain.PubKey {
	seed := sha256.Sum256(append([]byte("state-test/node/"), subject[:]...))
	k, _ := chain.PrivKeyFromSeed(seed[:])
	return k.Public()
}

func encKey(k chain.PrivKey) []byte {
	p := k.Public()
	return append([]byte("x25519:"), p[:8]...)
}

func (n *net) licence(subject chain.PubKey, issuer chain.PrivKey, notAfter int64) chain.Licence {
	l := chain.Licence{Role: chain.RoleProvider, Subject: subject, NodeKey: nodeKeyOf(subject), Number: "MD-1234", Jurisdiction: "VT", NotAfter: notAfter}
	l.Sign(issuer, testChain)
	return l
}

func (n *net) providerTx(k chain.PrivKey, l chain.Licence) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxRegisterProvider, n.nonce(k), &chain.RegisterProvider{Licence: l, EncryptionKey: encKey(k)})
}

func (n *net) proposeTx(k chain.PrivKey, action chain.AuthorityAction, subject chain.PubKey) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxAuthorityPropose, n.nonce(k), &chain.AuthorityPropose{Action: action, Subject: chain.Authority{Key: subject, Name: "clinic"}})
}

func (n *net) voteTx(k chain.PrivKey, id chain.Hash) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxAuthorityVote, n.nonce(k), &chain.AuthorityVote{Proposal: id})
}

// equivocation makes two conflicting prevotes by k at height.
func equivocation(k chain.PrivKey, chainID string, height uint64, round uint32) *chain.Evidence {
	a := chain.Vote{Type: chain.Prevote, Height: height, Round: round, BlockHash: chain.Sum256([]byte("block a"))}
	b := chain.Vote{Type: chain.Prevote, Height: height, Round: round, BlockHash: chain.Sum256([]byte("block b"))}
	a.Sign(k, chainID)
	b.Sign(k, chainID)
	return chain.NewEvidence(a, b)
}

// equivocation makes two conflicting prevotes by k at height, signed for this net's chain.
func (n *net) equivocation(k chain.PrivKey, height uint64, round uint32) *chain.Evidence {
	return equivocation(k, n.cid, height, round)
}

// evidenceTx reports ev; evidence carries nonce 0.
func (n *net) evidenceTx(sender chain.PrivKey, ev *chain.Evidence) *chain.Tx {
	return chain.NewTx(sender, testChain, chain.TxEvidence, 0, ev)
}

func (n *net) sets() (next, after *chain.AuthoritySet) {
	n.t.Helper()
	next, after, err := Authorities(n.view)
	if err != nil {
		n.t.Fatal(err)
	}
	return next, after
}

// setTip pretends the chain is at height (to test expiry and evidence age without running
// thousands of blocks).
func (n *net) setTip(height uint64) {
	n.height = height
	n.view.m[string(keyTip)] = chain.Encode(&tipRecord{Version: RecordVersion, Height: height, Time: n.time})
}

type verifyAll struct{}

func (verifyAll) Verified(chain.Hash) bool { return true }

// encodeChanges is a byte-exact fingerprint of a change set.
func encodeChanges(cs ChangeSet) []byte {
	var b bytes.Buffer
	for _, c := range cs.Changes {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(c.Key)))
		b.Write(c.Key)
		_ = binary.Write(&b, binary.BigEndian, c.Delete)
		_ = binary.Write(&b, binary.BigEndian, uint32(len(c.Value)))
		b.Write(c.Value)
	}
	return b.Bytes()
}
