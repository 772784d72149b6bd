package procnet_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
	"github.com/medledger/medledger/wallet/envelope"
)

// strangerReport mirrors the stranger program's JSON report.
type strangerReport struct {
	BlocksRead     int  `json:"blocks_read"`
	InboundStreams int  `json:"inbound_streams"`
	GossipPeers    int  `json:"gossip_peers"`
	Published      int  `json:"published"`
	DHTAnswers     int  `json:"dht_answers"`
	DHTProvided    bool `json:"dht_provided"`
	Replayed       int  `json:"replayed"`
	ReplayAnswers  int  `json:"replay_answers"`
	Sybil          struct {
		Identities  int            `json:"identities"`
		Used        int            `json:"used"`
		Dials       int            `json:"dials"`
		Connected   int            `json:"connected"`
		ConnectedTo map[string]int `json:"connected_to"`
		Streams     int            `json:"streams"`
		Pushes      int            `json:"pushes"`
	} `json:"sybil"`
	Errors []string `json:"errors"`
}

// TestStranger plays a libp2p peer whose key is no member's (testnet/procnet/stranger) against
// four member processes, and checks that each of its attacks fails: reading blocks, publishing a
// valid transaction, votes and proposals over gossip, joining the DHT and announcing itself as a
// record's holder, replaying an access request a member signed, and a flood of 250 fresh
// identities that try the record protocol and wait for replicas. Throughout, the chain keeps
// committing, a record imported during the flood is replicated among members only, and an
// honest member restarted in the middle of the flood gets back in and catches up.
func TestStranger(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	r := startRecordNet(t)
	bin := procnettest.StrangerBinary(t)
	bundle, err := os.ReadFile("../../node/fhir/testdata/bundle-collection.json")
	require.NoError(t, err)

	// A record at node0, shared with node1 and read there: a member's signed request exists.
	pat := r.newPatient()
	recs := r.importFHIR(0, pat, bundle)
	cond := findRecord(t, recs, "Condition")
	r.tx(0, pat, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: r.prov[1], Purpose: "TREAT",
		Scope: chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"Condition"}}})
	require.Eventually(t, func() bool { code, _, _ := r.read(1, cond, ""); return code == 200 }, stepTimeout, 100*time.Millisecond, "granted read")
	req := r.memberRequest(1, 0, cond)

	// A transaction any member would commit: a patient enrolled by node0's practice.
	newcomer := r.unregisteredPatient()
	enrol := r.enrolment(0, newcomer)

	var targets []string
	for i := range 4 {
		targets = append(targets, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", r.nw.P2PPort(i), r.peer[i]))
	}
	h0 := r.status(0).Height
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--chain", r.chainID, "--targets", strings.Join(targets, ","),
		"--tx", hex.EncodeToString(enrol.Encode()), "--request", hex.EncodeToString(chain.Encode(req)),
		"--record", cond.String(), "--sybils", "250", "--flood", "40s", "--grace", "15s")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	flood := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "flood starting") {
				once = true
				close(flood)
			}
		}
	}()

	select {
	case <-flood:
	case <-ctx.Done():
		t.Fatal("the stranger never reached its flood")
	}
	// In the middle of the flood: an honest member restarts and must get back in, a new record
	// is imported and replicated (never to a sybil), and the chain keeps committing.
	time.Sleep(5 * time.Second)
	require.NoError(t, r.nw.Stop(3))
	require.NoError(t, r.nw.Start(3))
	during := r.importFHIR(0, pat, bundle)
	require.NotEmpty(t, during)
	top := r.status(0).Height
	_, err = r.nw.WaitHeight(context.Background(), 3, top, stepTimeout)
	require.NoError(t, err, "node3, restarted during the flood, did not catch up")
	require.NoError(t, cmd.Wait(), "stranger program")

	var rep strangerReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	t.Logf("stranger report: %+v", rep)
	for i := range 4 {
		t.Logf("node%d is %s", i, r.peer[i])
	}
	require.Empty(t, rep.Errors, "attack steps that could not run")
	require.Zero(t, rep.BlocksRead, "blocks served to a stranger")
	require.Zero(t, rep.InboundStreams, "streams members opened to a stranger")
	require.Zero(t, rep.GossipPeers, "members that took a stranger as a gossip subscriber")
	require.Zero(t, rep.DHTAnswers, "DHT queries members answered for a stranger")
	require.False(t, rep.DHTProvided, "a stranger's provider record was accepted")
	require.Zero(t, rep.ReplayAnswers, "answers to a replayed request")
	require.Zero(t, rep.Replayed, "ciphertexts served to a replayed request")
	require.GreaterOrEqual(t, rep.Sybil.Used, 250, "the flood used fewer fresh identities than it should")
	require.Zero(t, rep.Sybil.Connected, "sybil connections left open past the grace")
	require.Zero(t, rep.Sybil.Streams, "record streams served to sybils")
	require.Zero(t, rep.Sybil.Pushes, "replicas pushed to sybils")

	// The stranger's transaction was valid: it was not relayed, so it is not on the ledger, and
	// the same bytes submitted by a member commit.
	h1 := r.status(0).Height
	require.Greater(t, h1, h0+20, "the chain stalled during the attack (height %d -> %d)", h0, h1)
	require.False(t, r.registered(0, newcomer), "the stranger's gossip got a transaction committed")
	_, err = r.nw.SubmitOne(context.Background(), 0, enrol)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.registered(0, newcomer) }, stepTimeout, 200*time.Millisecond,
		"the stranger's transaction, submitted by a member, should commit")
}

// memberRequest is an access request node from's provider signs for record, addressed from
// node from's identity to node to: what a member's read puts on the ledger.
func (r *recNet) memberRequest(from, to int, record chain.Hash) *chain.AccessRequest {
	r.t.Helper()
	req := &chain.AccessRequest{Role: "clinician", Record: record, RequesterNode: rawNodeKey(r.t, r.peer[from]), Holder: rawNodeKey(r.t, r.peer[to]),
		Purpose: "TREAT", IssuedMs: time.Now().UnixMilli(), Nonce: uint64(time.Now().UnixNano())}
	req.Sign(r.providerKey(from), r.chainID)
	return req
}

// unregisteredPatient is a patient's keys, not on the ledger.
func (r *recNet) unregisteredPatient() *patient {
	r.t.Helper()
	k, err := chain.GenerateKey(rand.Reader)
	require.NoError(r.t, err)
	e, err := envelope.GenerateKey(rand.Reader)
	require.NoError(r.t, err)
	return &patient{key: k, enc: e}
}

// enrolment is p's registration, co-signed by node i's provider: valid, not submitted.
func (r *recNet) enrolment(i int, p *patient) *chain.Tx {
	enroller := r.providerKey(i)
	body := chain.NewEnrolment(enroller, enroller.Public().Address(), r.chainID, p.key.Public(), p.enc.Public().Bytes())
	return chain.NewTx(p.key, r.chainID, chain.TxRegisterPatient, 1, body)
}

// registered reports whether node i's ledger has p registered as a patient.
func (r *recNet) registered(i int, p *patient) bool {
	r.t.Helper()
	code, out := r.do(i, http.MethodGet, "/v1/accounts/"+p.id().String(), nil)
	require.Equal(r.t, http.StatusOK, code, string(out))
	var a struct {
		Patient bool `json:"patient"`
	}
	require.NoError(r.t, json.Unmarshal(out, &a))
	return a.Patient
}
