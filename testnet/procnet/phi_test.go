package procnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/synth"
	"github.com/medledger/medledger/wallet/envelope"
)

// TestNoPHIInClear runs the record flow on four node processes — synthetic patients register,
// the practice (node0) imports their FHIR Bundles, the patients consent to the specialist
// (node2), the specialist reads and exports, others are refused — then stops every node cleanly
// and searches every file the network left behind (Badger tables and value logs, blob store,
// access journal, keys, config, node logs) for anything that identifies a patient: names, birth
// date, address, phone, record number, the Patient's FHIR id and a unique note, as written, in
// other letter case, JSON-escaped and hex-encoded. Only ciphertext may carry them.
func TestNoPHIInClear(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	const (
		practice, specialist, outsider = 0, 2, 1
		nPatients, nRecords            = 3, 12
	)
	nw, g := startFour(t, 1)
	c := &phiClient{t: t, nw: nw, g: g}

	providers := make([]chain.Address, nw.N)
	for i := range nw.N {
		providers[i] = c.waitProvider(i)
	}

	rnd := mrand.New(mrand.NewPCG(7, 11))
	type patient struct {
		person  *synth.Person
		key     chain.PrivKey
		records []phiRecord
	}
	patients := make([]*patient, nPatients)
	var markers []string
	who := map[string]string{} // marker → "patient k"
	for k := range patients {
		key, err := chain.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := envelope.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := &patient{person: synth.Patient(rnd, k), key: key}
		patients[k] = p
		for _, m := range p.person.Marker() {
			markers = append(markers, m)
			who[m] = fmt.Sprintf("patient %d", k)
		}
		h := c.submit(practice, key, chain.TxRegisterPatient, enrolment(t, c.nw, c.g, practice, key, enc.Public().Bytes()))
		t.Logf("patient %d registered at height %d", k, h)
	}

	// The practice imports every patient's Bundle.
	var anchored uint64
	for k, p := range patients {
		var out struct {
			Records []phiRecord `json:"records"`
		}
		c.json(practice, http.MethodPost, "/v1/patients/"+p.key.Public().Address().String()+"/records", p.person.Bundle(rnd, nRecords), "application/fhir+json", &out)
		if len(out.Records) != nRecords+1 {
			t.Fatalf("patient %d: imported %d records, want %d", k, len(out.Records), nRecords+1)
		}
		p.records = out.Records
		for _, r := range out.Records {
			anchored = max(anchored, r.Height)
		}
	}
	c.waitAll(anchored)

	// Refused reads, before any consent, at the specialist and at a node never granted.
	for _, i := range []int{specialist, outsider} {
		if code, _, body := c.read(i, patients[0].records[1].ID); code != http.StatusForbidden {
			t.Fatalf("node%d read a record without consent: HTTP %d: %s", i, code, truncate(body))
		}
	}

	// Every patient consents to the specialist, which reads some records (the Patient resource
	// among them) and exports patient 0's.
	var granted uint64
	for _, p := range patients {
		grant := &chain.ConsentGrant{Grantee: providers[specialist], Purpose: "TREAT", Scope: chain.ConsentScope{Kind: chain.ScopeAll},
			ExpiresMs: time.Now().Add(30 * 24 * time.Hour).UnixMilli()}
		granted = max(granted, c.submit(practice, p.key, chain.TxConsentGrant, grant))
	}
	c.waitAll(granted)
	reads := make([]int, nPatients)
	for k, p := range patients {
		for _, r := range []phiRecord{p.records[0], p.records[1], p.records[len(p.records)-1]} {
			body := c.readServed(specialist, r.ID)
			if !bytes.Contains(body, []byte(`"resourceType":"`+r.ResourceType+`"`)) {
				t.Fatalf("patient %d: read of a %s answered %s", k, r.ResourceType, truncate(body))
			}
			reads[k]++
		}
	}
	if code, _, body := c.do(specialist, http.MethodGet, "/v1/patients/"+patients[0].key.Public().Address().String()+"/export?purpose=TREAT", nil, ""); code != http.StatusOK {
		t.Fatalf("export at the specialist: HTTP %d: %s", code, truncate(body))
	}
	if code, _, body := c.read(outsider, patients[0].records[0].ID); code != http.StatusForbidden {
		t.Fatalf("node%d read a record without consent: HTTP %d: %s", outsider, code, truncate(body))
	}

	// Wait for the access logs to reach the ledger, then a few more blocks.
	for k, p := range patients {
		path := "/v1/patients/" + p.key.Public().Address().String() + "/accesses"
		err := procnet.WaitFor(context.Background(), stepTimeout, 250*time.Millisecond, fmt.Sprintf("patient %d's accesses on the ledger", k), func(ctx context.Context) (bool, error) {
			var out struct {
				Accesses []struct {
					Accessor chain.Address `json:"accessor"`
					Outcome  string        `json:"outcome"`
				} `json:"accesses"`
			}
			if err := c.tryJSON(ctx, practice, http.MethodGet, path, &out); err != nil {
				return false, err
			}
			served, refused := 0, 0
			for _, a := range out.Accesses {
				switch {
				case a.Accessor == providers[specialist] && a.Outcome == "served":
					served++
				case a.Outcome == "refused":
					refused++
				}
			}
			wantRefused := 0
			if k == 0 {
				wantRefused = 3
			}
			return served >= reads[k] && refused >= wantRefused, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	c.waitAll(maxHeight(t, nw, []int{0, 1, 2, 3}) + 3)

	// Stop every node cleanly: whatever a node writes at shutdown is scanned too.
	nw.StopTimeout = stepTimeout
	if err := nw.StopAll(); err != nil {
		t.Errorf("stopping the network: %v", err)
	}
	for i := range nw.N {
		if nw.Running(i) {
			t.Fatalf("node%d still running after StopAll", i)
		}
	}

	// Control: the scanner finds a planted marker (upper case, JSON-escaped, across a chunk
	// boundary) in a file in the network directory, and nothing once it is gone.
	control := filepath.Join(nw.Home(specialist), "phi-control.tmp")
	planted := synth.JSONEscapeASCII(strings.ToUpper(patients[1].person.Given))
	junk := bytes.Repeat([]byte{0xA5}, 3*synth.ScanChunk-len(planted)/2)
	data := slices.Concat(junk[:synth.ScanChunk-3], []byte(planted), junk[synth.ScanChunk-3:])
	if err := os.WriteFile(control, data, 0o600); err != nil {
		t.Fatal(err)
	}
	hits, _, err := synth.ScanDir(nw.Dir, markers)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range hits {
		found = found || (h.File == control && h.Marker == patients[1].person.Given)
	}
	if !found {
		t.Fatalf("control: the scanner missed %q planted in %s (hits: %v)", planted, control, hits)
	}
	if err := os.Remove(control); err != nil {
		t.Fatal(err)
	}

	hits, st, err := synth.ScanDir(nw.Dir, markers)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d files, %d bytes, for %d forms of %d markers: %v", st.Files, st.Bytes, len(synth.Needles(markers)), len(markers), st.Kinds)
	for _, want := range []string{"log", "badger", "blob"} {
		if st.Kinds[want] == 0 {
			t.Errorf("control: no %s files among those scanned: is the scan looking in the right place?", want)
		}
	}
	for _, h := range hits {
		rel, _ := filepath.Rel(nw.Dir, h.File)
		t.Errorf("PHI in clear: %s at offset %d holds %s's marker %q (as %s)", rel, h.Offset, who[h.Marker], h.Marker, h.Form)
	}
}

// phiRecord is one imported record as the API lists it.
type phiRecord struct {
	ID           chain.Hash `json:"id"`
	ResourceType string     `json:"resourceType"`
	Height       uint64     `json:"height"`
}

// phiClient talks to the nodes' APIs with a client patient enough for imports.
type phiClient struct {
	t  *testing.T
	nw *procnet.Network
	g  *chain.Genesis
}

func (c *phiClient) do(i int, method, path string, body []byte, ctype string) (int, http.Header, []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, h, data, err := c.try(ctx, i, method, path, body, ctype)
	if err != nil {
		c.t.Fatal(err)
	}
	return code, h, data
}

func (c *phiClient) try(ctx context.Context, i int, method, path string, body []byte, ctype string) (int, http.Header, []byte, error) {
	return c.nw.Request(ctx, i, method, path, ctype, body)
}

func (c *phiClient) tryJSON(ctx context.Context, i int, method, path string, out any) error {
	code, _, data, err := c.try(ctx, i, method, path, nil, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("node%d: %s %s: HTTP %d: %s", i, method, path, code, truncate(data))
	}
	return json.Unmarshal(data, out)
}

// json does a request that must answer 2xx with JSON.
func (c *phiClient) json(i int, method, path string, body []byte, ctype string, out any) {
	c.t.Helper()
	code, _, data := c.do(i, method, path, body, ctype)
	if code/100 != 2 {
		c.t.Fatalf("node%d: %s %s: HTTP %d: %s", i, method, path, code, truncate(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		c.t.Fatalf("node%d: %s %s: %v", i, method, path, err)
	}
}

// submit signs body under the account's next nonce, posts it to node i and returns the height it
// committed at.
func (c *phiClient) submit(i int, key chain.PrivKey, kind chain.TxKind, body any) uint64 {
	c.t.Helper()
	var acct struct {
		NextNonce uint64 `json:"next_nonce"`
	}
	c.json(i, http.MethodGet, "/v1/accounts/"+key.Public().Address().String(), nil, "", &acct)
	tx := chain.NewTx(key, c.g.ChainID, kind, acct.NextNonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	var out struct {
		Height uint64 `json:"height"`
	}
	c.json(i, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", &out)
	if out.Height == 0 {
		c.t.Fatalf("node%d: %s committed at no height", i, kind)
	}
	return out.Height
}

// waitProvider waits until node i reports its provider registered and returns its id.
func (c *phiClient) waitProvider(i int) chain.Address {
	c.t.Helper()
	var id chain.Address
	err := procnet.WaitFor(context.Background(), startTimeout, 250*time.Millisecond, fmt.Sprintf("node%d registered as a provider", i), func(ctx context.Context) (bool, error) {
		var st struct {
			ProviderID         *chain.Address `json:"provider_id"`
			ProviderRegistered bool           `json:"provider_registered"`
		}
		if err := c.tryJSON(ctx, i, http.MethodGet, "/v1/status", &st); err != nil {
			return false, err
		}
		if st.ProviderID == nil {
			return false, procnet.Permanent(fmt.Errorf("node%d has no provider id", i))
		}
		id = *st.ProviderID
		return st.ProviderRegistered, nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return id
}

func (c *phiClient) waitAll(h uint64) {
	c.t.Helper()
	for i := range c.nw.N {
		if _, err := c.nw.WaitHeight(context.Background(), i, h, stepTimeout); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *phiClient) read(i int, id chain.Hash) (int, http.Header, []byte) {
	c.t.Helper()
	return c.do(i, http.MethodGet, "/v1/records/"+id.String()+"?purpose=TREAT", nil, "")
}

// readServed reads a record the node may read; it retries anything but a refusal for a while,
// since a holder may still be receiving the new key envelope.
func (c *phiClient) readServed(i int, id chain.Hash) []byte {
	c.t.Helper()
	var body []byte
	err := procnet.WaitFor(context.Background(), stepTimeout, 500*time.Millisecond, fmt.Sprintf("node%d reads record %s", i, id.Short()), func(ctx context.Context) (bool, error) {
		code, _, data, err := c.try(ctx, i, http.MethodGet, "/v1/records/"+id.String()+"?purpose=TREAT", nil, "")
		switch {
		case err != nil:
			return false, err
		case code == http.StatusOK:
			body = data
			return true, nil
		case code == http.StatusForbidden:
			return false, procnet.Permanent(fmt.Errorf("refused with consent: %s", truncate(data)))
		}
		return false, fmt.Errorf("HTTP %d: %s", code, truncate(data))
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return body
}
