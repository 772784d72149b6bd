package procnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
	"github.com/medledger/medledger/wallet/envelope"
)

// recNet is a four-node process network seen through its record API.
type recNet struct {
	t       *testing.T
	nw      *procnet.Network
	chainID string
	prov    []chain.Address // provider id of node i
	peer    []peer.ID       // libp2p id of node i
}

func (r *recNet) do(i int, method, path string, body []byte) (int, []byte) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	code, out, err := r.nw.Do(ctx, i, method, path, body, true)
	require.NoError(r.t, err, "node%d %s %s", i, method, path)
	return code, out
}

func (r *recNet) status(i int) node.StatusJSON {
	r.t.Helper()
	code, body := r.do(i, http.MethodGet, "/v1/status", nil)
	require.Equal(r.t, http.StatusOK, code, string(body))
	var st node.StatusJSON
	require.NoError(r.t, json.Unmarshal(body, &st))
	return st
}

// patient is a test wallet: a signing key (the patient id) and an encryption key.
type patient struct {
	key   chain.PrivKey
	enc   *envelope.PrivateKey
	nonce uint64
}

func (p *patient) id() chain.Address { return p.key.Public().Address() }

// tx signs body as the patient and submits it through node i, waiting for its block.
func (r *recNet) tx(i int, p *patient, kind chain.TxKind, body any) node.TxAccepted {
	r.t.Helper()
	p.nonce++
	tx := chain.NewTx(p.key, r.chainID, kind, p.nonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	code, out := r.do(i, http.MethodPost, "/v1/txs?wait=commit", req)
	require.Equal(r.t, http.StatusOK, code, "%s: %s", kind, out)
	var acc node.TxAccepted
	require.NoError(r.t, json.Unmarshal(out, &acc))
	return acc
}

func (r *recNet) newPatient() *patient {
	r.t.Helper()
	k, err := chain.GenerateKey(rand.Reader)
	require.NoError(r.t, err)
	e, err := envelope.GenerateKey(rand.Reader)
	require.NoError(r.t, err)
	p := &patient{key: k, enc: e}
	enroller := r.providerKey(0) // node0's provider enrols the patient
	r.tx(0, p, chain.TxRegisterPatient, chain.NewEnrolment(enroller, enroller.Public().Address(), r.chainID, k.Public(), e.Public().Bytes()))
	return p
}

func (r *recNet) importFHIR(i int, p *patient, data []byte) []records.ImportedRecord {
	r.t.Helper()
	code, out := r.do(i, http.MethodPost, "/v1/patients/"+p.id().String()+"/records", data)
	require.Equal(r.t, http.StatusCreated, code, string(out))
	var res struct {
		Records []records.ImportedRecord `json:"records"`
	}
	require.NoError(r.t, json.Unmarshal(out, &res))
	return res.Records
}

// read is GET /v1/records/{id} on node i; it returns the status, the body and the serving holder.
func (r *recNet) read(i int, id chain.Hash, query string) (int, []byte, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	code, h, body, err := r.nw.Request(ctx, i, http.MethodGet, "/v1/records/"+id.String()+query, "", nil)
	require.NoError(r.t, err)
	return code, body, h.Get("X-MedLedger-Holder")
}

func (r *recNet) accesses(i int, p *patient) []records.AccessJSON {
	r.t.Helper()
	code, out := r.do(i, http.MethodGet, "/v1/patients/"+p.id().String()+"/accesses", nil)
	require.Equal(r.t, http.StatusOK, code, string(out))
	var res struct {
		Accesses []records.AccessJSON `json:"accesses"`
	}
	require.NoError(r.t, json.Unmarshal(out, &res))
	return res.Accesses
}

func (r *recNet) records(i int, p *patient) []records.RecordJSON {
	r.t.Helper()
	code, out := r.do(i, http.MethodGet, "/v1/patients/"+p.id().String()+"/records", nil)
	require.Equal(r.t, http.StatusOK, code, string(out))
	var res struct {
		Records []records.RecordJSON `json:"records"`
	}
	require.NoError(r.t, json.Unmarshal(out, &res))
	return res.Records
}

// countAccesses counts logged accesses to record by accessor with the outcome.
func countAccesses(list []records.AccessJSON, record chain.Hash, accessor chain.Address, outcome string) int {
	n := 0
	for _, a := range list {
		if a.Record == record && a.Accessor == accessor && a.Outcome == outcome {
			n++
		}
	}
	return n
}

// waitAccesses waits until node i's view of p's access log satisfies ok.
func (r *recNet) waitAccesses(i int, p *patient, what string, ok func([]records.AccessJSON) bool) []records.AccessJSON {
	r.t.Helper()
	var last []records.AccessJSON
	err := procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, what, func(context.Context) (bool, error) {
		last = r.accesses(i, p)
		return ok(last), nil
	})
	require.NoError(r.t, err, "accesses: %+v", last)
	return last
}

func (r *recNet) nodeOf(holder string) int {
	for i, p := range r.peer {
		if p.String() == holder {
			return i
		}
	}
	return -1
}

// blobPath is where node i keeps a ciphertext.
func (r *recNet) blobPath(i int, h chain.Hash) string {
	return filepath.Join(r.nw.Home(i), "blobs", "blobs", h.String())
}

func (r *recNet) providerKey(i int) chain.PrivKey {
	k, err := node.ReadKeyFile(filepath.Join(r.nw.Home(i), "keys", "provider.key"))
	require.NoError(r.t, err)
	return k
}

// rawFetch sends a fetch signed with node from's provider key straight to node to's blob
// protocol, bypassing from's own consent check: it shows what a holder does with a request its
// consent state does not allow. It speaks under node from's libp2p identity (a second host with
// from's key): holders admit members only.
func (r *recNet) rawFetch(from, to int, record chain.Hash) *exchange.FetchResponse {
	r.t.Helper()
	id, err := p2p.LoadOrCreateIdentity(filepath.Join(r.nw.Home(from), "keys", "p2p.key"))
	require.NoError(r.t, err)
	h, err := libp2p.New(libp2p.Identity(id), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	require.NoError(r.t, err)
	defer h.Close()
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", r.nw.P2PPort(to)))
	require.NoError(r.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	require.NoError(r.t, h.Connect(ctx, peer.AddrInfo{ID: r.peer[to], Addrs: []ma.Multiaddr{addr}}))
	req := &chain.AccessRequest{Role: "clinician", Record: record, RequesterNode: rawNodeKey(r.t, h.ID()), Holder: rawNodeKey(r.t, r.peer[to]), Purpose: "TREAT",
		IssuedMs: time.Now().UnixMilli(), Nonce: uint64(time.Now().UnixNano())}
	req.Sign(r.providerKey(from), r.chainID)
	resp, err := exchange.Fetch(ctx, h, r.chainID, r.peer[to], req)
	require.NoError(r.t, err)
	return resp
}

// rawNodeKey is the raw Ed25519 key a peer id embeds.
func rawNodeKey(t *testing.T, p peer.ID) chain.PubKey {
	t.Helper()
	pk, err := p.ExtractPublicKey()
	require.NoError(t, err)
	raw, err := pk.Raw()
	require.NoError(t, err)
	var k chain.PubKey
	require.Len(t, raw, len(k))
	copy(k[:], raw)
	return k
}

func startRecordNet(t *testing.T) *recNet {
	nw := procnettest.New(t, 4)
	procnettest.StartAll(t, nw)
	r := &recNet{t: t, nw: nw, prov: make([]chain.Address, 4), peer: make([]peer.ID, 4)}
	for i := range 4 {
		err := procnet.WaitFor(context.Background(), startTimeout, 200*time.Millisecond, fmt.Sprintf("node%d provider registered", i), func(ctx context.Context) (bool, error) {
			_, out, err := nw.Do(ctx, i, http.MethodGet, "/v1/status", nil, true)
			if err != nil {
				return false, err
			}
			var st node.StatusJSON
			if err := json.Unmarshal(out, &st); err != nil {
				return false, err
			}
			return st.ProviderRegistered, nil
		})
		require.NoError(t, err)
		st := r.status(i)
		r.chainID = st.ChainID
		r.prov[i] = *st.ProviderID
		p, err := peer.Decode(st.NodeID)
		require.NoError(t, err)
		r.peer[i] = p
	}
	return r
}

func findRecord(t *testing.T, recs []records.ImportedRecord, typ string) chain.Hash {
	t.Helper()
	for _, r := range recs {
		if r.ResourceType == typ {
			return r.ID
		}
	}
	t.Fatalf("no %s among %+v", typ, recs)
	return chain.Hash{}
}

// TestRecordStory runs the whole record-sharing story on four node processes: import at a
// practice, refusal without consent (by the reader's own node and by a holder), grant, remote read
// with audit, a tampered copy, amendment, emergency access, expiry by block time, revocation,
// a holder killed right after serving, and erasure.
func TestRecordStory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	r := startRecordNet(t)
	pat := r.newPatient()
	bundle, err := os.ReadFile("../../node/fhir/testdata/bundle-collection.json")
	require.NoError(t, err)

	// The practice (node0) imports the patient's bundle.
	recs := r.importFHIR(0, pat, bundle)
	require.Len(t, recs, 3)
	cond, obs := findRecord(t, recs, "Condition"), findRecord(t, recs, "Observation")
	list := r.records(2, pat) // every node's index follows the ledger
	require.Eventually(t, func() bool { return len(r.records(2, pat)) == 3 }, stepTimeout, 200*time.Millisecond, "records on node2: %+v", list)

	// Invalid FHIR: nothing is anchored, the error names resource and field.
	code, out := r.do(0, http.MethodPost, "/v1/patients/"+pat.id().String()+"/records", []byte(`{"resourceType":"Observation","status":"bogus","code":{}}`))
	require.Equal(t, http.StatusUnprocessableEntity, code, string(out))
	require.Contains(t, string(out), "Observation")
	require.Len(t, r.records(0, pat), 3)

	// Without consent the specialist's node refuses its own user, and the attempt is logged.
	code, out, _ = r.read(2, cond, "")
	require.Equal(t, http.StatusForbidden, code, string(out))
	r.waitAccesses(1, pat, "refused read logged", func(l []records.AccessJSON) bool { return countAccesses(l, cond, r.prov[2], "refused") == 1 })
	// A holder refuses a fetch without consent too (sent raw, past node2's own check), and logs it.
	// (Another record than above: the ledger keeps one refusal per requester and record an hour.)
	resp := r.rawFetch(2, 0, obs)
	require.Equal(t, exchange.StatusRefused, resp.Status, resp.Reason)
	require.Empty(t, resp.Ciphertext)
	r.waitAccesses(1, pat, "holder refusal logged", func(l []records.AccessJSON) bool { return countAccesses(l, obs, r.prov[2], "refused") == 1 })

	// The patient grants the specialist their Conditions; the specialist reads, the patient sees it.
	r.tx(0, pat, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: r.prov[2], Purpose: "TREAT",
		Scope: chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"Condition"}}})
	var holder string
	require.Eventually(t, func() bool {
		code, out, holder = r.read(2, cond, "")
		return code == http.StatusOK
	}, stepTimeout, 100*time.Millisecond, "granted read")
	require.Contains(t, string(out), `"resourceType":"Condition"`)
	t.Logf("condition served to node2 by %s", holder)
	code, _, _ = r.read(2, obs, "")
	require.Equal(t, http.StatusForbidden, code, "an Observation is outside a Condition-only consent")
	l := r.waitAccesses(3, pat, "served read logged", func(l []records.AccessJSON) bool { return countAccesses(l, cond, r.prov[2], "served") == 1 })
	for _, a := range l {
		require.Equal(t, "TREAT", a.Purpose)
		require.False(t, a.Emergency)
		require.NotZero(t, a.Height)
	}

	// Tampered copies: every copy but one is damaged; the read detects them and uses the good one.
	meta := r.records(0, pat)
	var condHash chain.Hash
	for _, m := range meta {
		if m.ID == cond {
			condHash = *m.CiphertextHash
		}
	}
	// Replicas copy the ciphertext in the background (batched), so the author may be the only
	// holder for a moment after the anchor commits.
	var holders []int
	require.Eventually(t, func() bool {
		holders = holders[:0]
		for i := range 4 {
			if _, err := os.Stat(r.blobPath(i, condHash)); err == nil {
				holders = append(holders, i)
			}
		}
		return len(holders) >= 2
	}, stepTimeout, 100*time.Millisecond, "author plus replicas hold the ciphertext")
	t.Logf("condition ciphertext held by nodes %v", holders)
	good := -1
	for _, i := range holders {
		if i != 2 {
			good = i
		}
	}
	original, err := os.ReadFile(r.blobPath(good, condHash))
	require.NoError(t, err)
	damaged := bytes.Clone(original)
	damaged[len(damaged)/2] ^= 0xff
	for _, i := range holders {
		if i != good {
			require.NoError(t, os.WriteFile(r.blobPath(i, condHash), damaged, 0o600))
		}
	}
	code, out, holder = r.read(2, cond, "")
	require.Equal(t, http.StatusOK, code, string(out))
	require.Equal(t, good, r.nodeOf(holder), "the one good copy served the read")
	// With the last good copy damaged too, nothing decrypts: the read fails rather than trusting it.
	require.NoError(t, os.WriteFile(r.blobPath(good, condHash), damaged, 0o600))
	code, out, _ = r.read(2, cond, "")
	require.Equal(t, http.StatusNotFound, code, string(out))
	require.Contains(t, string(out), "tamper")
	for _, i := range holders {
		require.NoError(t, os.WriteFile(r.blobPath(i, condHash), original, 0o600))
	}

	// Amendment: a new version supersedes the old; both stay readable with consent.
	amended := bytes.Replace(mustResource(t, r, 2, cond), []byte(`"resourceType":"Condition"`), []byte(`"note":[{"text":"amended"}],"resourceType":"Condition"`), 1)
	code, out = r.do(0, http.MethodPost, "/v1/records/"+cond.String()+"/amend", amended)
	require.Equal(t, http.StatusCreated, code, string(out))
	var am struct{ Records []records.ImportedRecord }
	require.NoError(t, json.Unmarshal(out, &am))
	cond2 := am.Records[0].ID
	require.EqualValues(t, 2, am.Records[0].Version)
	require.Eventually(t, func() bool { c, _, _ := r.read(2, cond2, ""); return c == http.StatusOK }, stepTimeout, 100*time.Millisecond)
	code, out, _ = r.read(2, cond, "")
	require.Equal(t, http.StatusOK, code, "history stays readable: %s", out)
	for _, m := range r.records(0, pat) {
		if m.ID == cond {
			require.NotNil(t, m.SupersededBy)
			require.Equal(t, cond2, *m.SupersededBy)
		}
	}

	// Emergency access: only with a reason, on the ledger, flagged in the audit view.
	code, out = r.do(1, http.MethodPost, "/v1/emergency", []byte(`{"record":"`+obs.String()+`","reason":""}`))
	require.Equal(t, http.StatusBadRequest, code, string(out))
	code, out = r.do(1, http.MethodPost, "/v1/emergency", []byte(`{"record":"`+obs.String()+`","purpose":"ETREAT","reason_code":"unable-to-consent","reason":"unconscious in the emergency department"}`))
	require.Equal(t, http.StatusOK, code, string(out))
	require.Eventually(t, func() bool { c, _, _ := r.read(1, obs, "?emergency=true"); return c == http.StatusOK }, stepTimeout, 100*time.Millisecond) // ETREAT by default, as the access was opened
	l = r.waitAccesses(0, pat, "emergency read logged", func(l []records.AccessJSON) bool { return countAccesses(l, obs, r.prov[1], "served") >= 1 })
	for _, a := range l {
		if a.Record == obs && a.Accessor == r.prov[1] {
			require.True(t, a.Emergency)
		}
	}

	// Expiry by block time: a consent for node3 that ends a few seconds from now.
	expires := time.Now().Add(6 * time.Second).UnixMilli()
	r.tx(0, pat, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: r.prov[3], Purpose: "TREAT", ExpiresMs: expires, Scope: chain.ConsentScope{Kind: chain.ScopeAll}})
	require.Eventually(t, func() bool { c, _, _ := r.read(3, obs, ""); return c == http.StatusOK }, stepTimeout, 100*time.Millisecond, "read before expiry")
	require.NoError(t, procnet.WaitFor(context.Background(), stepTimeout, 100*time.Millisecond, "a block after the expiry", func(ctx context.Context) (bool, error) {
		st := r.status(3)
		bt, err := time.Parse(time.RFC3339Nano, st.LastBlockTime)
		return err == nil && bt.UnixMilli() >= expires, err
	}))
	code, out, _ = r.read(3, obs, "")
	require.Equal(t, http.StatusForbidden, code, string(out))
	require.Contains(t, string(out), "expired")
	resp = r.rawFetch(3, 0, obs)
	require.Equal(t, exchange.StatusRefused, resp.Status, "holders refuse an expired consent too")

	// Revocation: the specialist can fetch neither old nor new records, and new ones are not
	// wrapped for it.
	var consentID chain.Hash
	code, out = r.do(0, http.MethodGet, "/v1/patients/"+pat.id().String()+"/consents", nil)
	require.Equal(t, http.StatusOK, code)
	var cs struct{ Consents []records.ConsentJSON }
	require.NoError(t, json.Unmarshal(out, &cs))
	for _, c := range cs.Consents {
		if c.Grantee == r.prov[2] && !c.Revoked {
			consentID = c.ID
		}
	}
	require.False(t, consentID.IsZero())
	r.tx(0, pat, chain.TxConsentRevoke, &chain.ConsentRevoke{Consent: consentID})
	require.Eventually(t, func() bool { c, _, _ := r.read(2, cond, ""); return c == http.StatusForbidden }, stepTimeout, 100*time.Millisecond)
	resp = r.rawFetch(2, 0, cond)
	require.Equal(t, exchange.StatusRefused, resp.Status, "a holder refuses a revoked grantee")
	newCond := findRecord(t, r.importFHIR(0, pat, conditionFor(t, bundle)), "Condition")
	node2Enc := readEncKey(t, r.nw.Home(2))
	envs, err := blobstore.ReadEnvelopes(filepath.Join(r.nw.Home(0), "blobs"), newCond)
	require.NoError(t, err)
	require.NotEmpty(t, envs)
	for _, e := range envs {
		require.NotEqual(t, node2Enc.Public().KeyID(), e.RecipientKeyID, "a record imported after the revoke has no envelope for the revoked grantee")
	}
	// 404 until node2 has the anchor's block, then 403.
	require.Eventually(t, func() bool { c, _, _ := r.read(2, newCond, ""); return c == http.StatusForbidden }, stepTimeout, 100*time.Millisecond)

	// A holder killed right after serving still logs the read exactly once.
	r.tx(0, pat, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: r.prov[1], Purpose: "TREAT", Scope: chain.ConsentScope{Kind: chain.ScopeAll}})
	before := countAccesses(r.accesses(0, pat), newCond, r.prov[1], "served")
	require.Eventually(t, func() bool { c, _, h := r.read(1, newCond, ""); holder = h; return c == http.StatusOK }, stepTimeout, 100*time.Millisecond)
	// The node that journalled the read is the holder, or the reader itself when it read its
	// own replica.
	victim := r.nodeOf(holder)
	if holder == "local" {
		victim = 1
	}
	require.GreaterOrEqual(t, victim, 0, "holder %q", holder)
	require.NoError(t, r.nw.Kill(victim))
	t.Logf("killed node%d (kill -9) right after it served (holder %s)", victim, holder)
	require.NoError(t, r.nw.Start(victim))
	// The steps below ask node0's API, which may be the node just restarted: wait until it answers.
	_, err = r.nw.WaitHeight(context.Background(), victim, 1, startTimeout)
	require.NoError(t, err, "node%d after its restart", victim)
	obsNode := (victim + 1) % 4
	r.waitAccesses(obsNode, pat, "the served read logged once after the crash", func(l []records.AccessJSON) bool {
		return countAccesses(l, newCond, r.prov[1], "served") == before+1
	})

	// Erasure: every holder deletes the ciphertext and envelopes and acknowledges.
	var obsHash chain.Hash
	for _, m := range r.records(0, pat) {
		if m.ID == obs {
			obsHash = *m.CiphertextHash
		}
	}
	r.tx(0, pat, chain.TxRecordErase, &chain.RecordErase{Records: []chain.Hash{obs}})
	require.Eventually(t, func() bool {
		for i := range 4 {
			if _, err := os.Stat(r.blobPath(i, obsHash)); err == nil {
				return false
			}
			if _, err := os.Stat(filepath.Join(r.nw.Home(i), "blobs", "envelopes", obs.String())); err == nil {
				return false
			}
		}
		return true
	}, stepTimeout, 200*time.Millisecond, "every copy deleted")
	for i := range 4 {
		code, _, _ := r.read(i, obs, "?purpose=ETREAT&emergency=true")
		require.Equal(t, http.StatusGone, code, "node%d", i)
	}
	require.Eventually(t, func() bool {
		for _, m := range r.records(0, pat) {
			if m.ID == obs {
				return m.Erased && m.CiphertextHash == nil && m.ResourceType == "" && slices.Contains(m.ErasureAcks, r.prov[0])
			}
		}
		return false
	}, stepTimeout, 200*time.Millisecond, "erasure acknowledged by the author, anchor reduced to a hash")
}

// mustResource reads a record at node i and returns its FHIR JSON.
func mustResource(t *testing.T, r *recNet, i int, id chain.Hash) []byte {
	t.Helper()
	code, out, _ := r.read(i, id, "")
	require.Equal(t, http.StatusOK, code, string(out))
	return out
}

// conditionFor returns the bundle's Patient and Condition as a new bundle.
func conditionFor(t *testing.T, bundle []byte) []byte {
	t.Helper()
	var b map[string]any
	require.NoError(t, json.Unmarshal(bundle, &b))
	var keep []any
	for _, e := range b["entry"].([]any) {
		typ := e.(map[string]any)["resource"].(map[string]any)["resourceType"]
		if typ == "Patient" || typ == "Condition" {
			keep = append(keep, e)
		}
	}
	b["entry"] = keep
	out, err := json.Marshal(b)
	require.NoError(t, err)
	return out
}

func readEncKey(t *testing.T, home string) *envelope.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(home, "keys", "encryption.key"))
	require.NoError(t, err)
	raw, err := hex.DecodeString(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	k, err := envelope.ParsePrivateKey(raw)
	require.NoError(t, err)
	return k
}
