package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/synth"
	"github.com/medledger/medledger/wallet/keystore"
)

// The story's bounds keep a stuck network from hanging the demo; none is a performance claim.
const (
	storyStep     = 2 * time.Minute  // waiting for registrations, heights, the audit trail
	storyRequest  = 90 * time.Second // one API request (an import waits for its anchors to commit)
	storyPatients = 3
	storySeed     = 20240301 // the synthetic people are the same on every run
	storyConsent  = 30 * 24 * time.Hour
)

// storyPeople makes up the story's n synthetic patients (1 to n) from storySeed, the same on
// every run, and returns them with the random source positioned after them, from which the
// story draws their Bundles. Tests regenerate the demo's people with it.
func storyPeople(n int) ([]*synth.Person, *mrand.Rand) {
	rnd := mrand.New(mrand.NewPCG(storySeed, storySeed))
	people := make([]*synth.Person, n)
	for k := range people {
		people[k] = synth.Patient(rnd, k+1)
	}
	return people, rnd
}

// story walks through consent-gated record sharing on a running network, printing numbered
// lines. It prints identifiers, record types, heights and outcomes, never a name or any
// clinical content.
type story struct {
	w    io.Writer
	nw   *procnet.Network
	g    *chain.Genesis
	step int
	// provider and peer are each node's provider id and libp2p peer id.
	provider []chain.Address
	peer     []string
	// practice and specialist are node indexes.
	practice, specialist int
	// clinician is the session token of a clinician's staff account at the specialist, and
	// clinicianName its user name.
	clinician, clinicianName string
}

// storyPatient is one synthetic patient of the story.
type storyPatient struct {
	person  *synth.Person
	wallet  *keystore.Wallet
	records []records.ImportedRecord
}

func (s *story) say(format string, args ...any) {
	s.step++
	fmt.Fprintf(s.w, "%d. "+format+"\n", append([]any{s.step}, args...)...)
}

func (s *story) detail(format string, args ...any) { fmt.Fprintf(s.w, "   "+format+"\n", args...) }

// role names node i for the reader.
func (s *story) role(i int) string {
	switch i {
	case s.practice:
		return fmt.Sprintf("node%d (the practice)", i)
	case s.specialist:
		return fmt.Sprintf("node%d (the specialist)", i)
	}
	return fmt.Sprintf("node%d", i)
}

// providerRole names a provider id by its node, or by the id.
func (s *story) providerRole(a chain.Address) string {
	for i, p := range s.provider {
		if p == a {
			return s.role(i)
		}
	}
	return "provider " + short(a.String())
}

// holderRole names the X-MedLedger-Holder of a read: "local" or a peer id.
func (s *story) holderRole(reader int, h string) string {
	if h == "local" {
		return s.role(reader) + " itself (its own replica)"
	}
	for i, p := range s.peer {
		if p == h {
			return s.role(i) + " (peer " + shortPeer(h) + ")"
		}
	}
	return "peer " + shortPeer(h)
}

// article is "an" before a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("AEIOUaeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func shortPeer(p string) string {
	if len(p) > 12 {
		return "…" + p[len(p)-8:]
	}
	return p
}

// call sends one request to node i's API and returns the status, headers and body; a non-2xx
// answer is not an error here.
func (s *story) call(ctx context.Context, i int, method, path string, body []byte, ctype string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storyRequest)
	defer cancel()
	code, h, data, err := s.nw.Request(ctx, i, method, path, ctype, body)
	if err != nil {
		return code, h, nil, fmt.Errorf("node%d: %s %s: %w", i, method, routeOf(path), err)
	}
	return code, h, data, nil
}

// callAs is call with a staff member's session token instead of the operator's.
func (s *story) callAs(ctx context.Context, i int, token, method, path string, body []byte, ctype string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storyRequest)
	defer cancel()
	code, h, data, err := s.nw.RequestAs(ctx, i, token, method, path, ctype, body)
	if err != nil {
		return code, h, nil, fmt.Errorf("node%d: %s %s: %w", i, method, routeOf(path), err)
	}
	return code, h, data, nil
}

// clinicianSession adds a clinician's staff account at node i (what medledger users add does)
// and logs in as them: the specialist's reads are then a person's, and the ledger records
// their role.
func (s *story) clinicianSession(ctx context.Context, i int) error {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	name, password := "dr-"+hex.EncodeToString(b[:2]), hex.EncodeToString(b[2:])
	if err := staff.Add(node.Home(s.nw.Home(i)).UsersFile(), name, staff.RoleClinician, password, staff.DefaultHashParams, rand.Reader, time.Now()); err != nil {
		return fmt.Errorf("node%d: add a clinician: %w", i, err)
	}
	body, _ := json.Marshal(node.LoginRequest{Name: name, Password: password})
	code, _, data, err := s.callAs(ctx, i, "", http.MethodPost, "/v1/login", body, "application/json")
	if err != nil {
		return err
	}
	var l node.LoginJSON
	if code != http.StatusOK || json.Unmarshal(data, &l) != nil || l.Token == "" {
		return fmt.Errorf("node%d: the clinician's login answered %d: %s", i, code, apiReason(data))
	}
	s.clinician, s.clinicianName = l.Token, name
	return nil
}

// callJSON is call for a JSON answer: anything but 2xx is an error carrying the node's reason.
func (s *story) callJSON(ctx context.Context, i int, method, path string, body []byte, ctype string, out any) error {
	code, _, data, err := s.call(ctx, i, method, path, body, ctype)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("node%d: %s %s answered %d: %s", i, method, routeOf(path), code, apiReason(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("node%d: %s %s: malformed JSON answer: %w", i, method, routeOf(path), err)
	}
	return nil
}

// routeOf drops the query of a path, for messages.
func routeOf(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// apiReason is the one-line "error" of an API error answer.
func apiReason(data []byte) string {
	var e node.ErrorJSON
	msg := string(data)
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if r := []rune(msg); len(r) > 240 {
		msg = string(r[:240]) + "…"
	}
	return msg
}

// submit signs body with key under the account's next nonce, posts it to node i and waits
// until it commits.
func (s *story) submit(ctx context.Context, i int, key chain.PrivKey, kind chain.TxKind, body any) (node.TxAccepted, error) {
	var acct node.AccountJSON
	if err := s.callJSON(ctx, i, http.MethodGet, "/v1/accounts/"+key.Public().Address().String(), nil, "", &acct); err != nil {
		return node.TxAccepted{}, err
	}
	tx := chain.NewTx(key, s.g.ChainID, kind, acct.NextNonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	var out node.TxAccepted
	if err := s.callJSON(ctx, i, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", &out); err != nil {
		return out, fmt.Errorf("%s: %w", kind, err)
	}
	return out, nil
}

// waitAll waits until every node has committed height h.
func (s *story) waitAll(ctx context.Context, h uint64) error {
	for i := range s.nw.N {
		if _, err := s.nw.WaitHeight(ctx, i, h, storyStep); err != nil {
			return err
		}
	}
	return nil
}

// tellStory runs the demo's story on a started network; nRecords is the resources per patient
// (0 skips the story). It returns the payer's node the money chapter starts, still running, for
// the caller to stop (nil if none started).
func tellStory(ctx context.Context, w io.Writer, nw *procnet.Network, g *chain.Genesis, nRecords int) (*fullNode, error) {
	if nRecords <= 0 {
		return nil, nil
	}
	if nw.N < 2 {
		fmt.Fprintf(w, "(no story with a single node: it needs a practice and a specialist on different nodes)\n\n")
		return nil, nil
	}
	s := &story{
		w: w, nw: nw, g: g,
		provider: make([]chain.Address, nw.N), peer: make([]string, nw.N),
		practice: 0, specialist: min(2, nw.N-1),
	}

	// 1. The nodes are up and register themselves as providers from their licences.
	for i := range nw.N {
		err := procnet.WaitFor(ctx, storyStep, 250*time.Millisecond, fmt.Sprintf("node%d registered as a provider", i), func(ctx context.Context) (bool, error) {
			if exitErr, ok := nw.Exited(i); ok {
				return false, procnet.Permanent(fmt.Errorf("node%d exited (%v); log tail:\n%s", i, exitErr, nw.LogTail(i, 2000)))
			}
			var st node.StatusJSON
			if err := s.callJSON(ctx, i, http.MethodGet, "/v1/status", nil, "", &st); err != nil {
				return false, err
			}
			if st.ProviderID == nil {
				return false, procnet.Permanent(fmt.Errorf("node%d reports no provider id: it has no provider keys", i))
			}
			s.provider[i], s.peer[i] = *st.ProviderID, st.NodeID
			return st.ProviderRegistered, nil
		})
		if err != nil {
			return nil, err
		}
	}
	s.say("%d authority nodes are running, and each is a licensed provider registered on the ledger by genesis (its licence binds its signing key to its node's libp2p key: the nodes admit only members).", nw.N)
	s.detail("node%d is the practice:   provider id %s", s.practice, s.provider[s.practice])
	s.detail("node%d is the specialist: provider id %s", s.specialist, s.provider[s.specialist])

	// 2. Synthetic patients get wallets and register.
	people, rnd := storyPeople(storyPatients)
	patients := make([]*storyPatient, storyPatients)
	walletDir := filepath.Join(nw.Dir, "wallets")
	s.say("%d synthetic patients get wallets (keys only, in %s) and register on the ledger under pseudonymous ids:", storyPatients, walletDir)
	for k := range patients {
		p := &storyPatient{person: people[k]}
		dir := filepath.Join(walletDir, fmt.Sprintf("patient%d", k+1))
		var err error
		if p.wallet, err = keystore.Create(dir, rand.Reader); errors.Is(err, keystore.ErrExists) {
			p.wallet, err = keystore.Open(dir, nil) // the demo writes plaintext (version 1) wallets
		}
		if err != nil {
			return nil, fmt.Errorf("patient %d wallet: %w", k+1, err)
		}
		// The practice enrols the patient (co-signs its registration); the wallet submits it.
		enc := p.wallet.EncryptionKey().Public().Bytes()
		req, _ := json.Marshal(node.EnrolRequest{PatientKey: p.wallet.SigningKey().Public(), EncryptionKey: hex.EncodeToString(enc)})
		var en node.EnrolmentJSON
		if err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/enrolments", req, "application/json", &en); err != nil {
			return nil, fmt.Errorf("enrolling patient %d: %w", k+1, err)
		}
		body := &chain.RegisterPatient{EncryptionKey: enc, Enroller: en.Enroller}
		if sig, err := hex.DecodeString(en.EnrollerSig); err != nil || len(sig) != len(body.EnrollerSig) {
			return nil, fmt.Errorf("enrolling patient %d: malformed co-signature", k+1)
		} else {
			copy(body.EnrollerSig[:], sig)
		}
		out, err := s.submit(ctx, s.practice, p.wallet.SigningKey(), chain.TxRegisterPatient, body)
		if err != nil {
			return nil, fmt.Errorf("registering patient %d: %w", k+1, err)
		}
		s.detail("patient %d: id %s, registered at height %d", k+1, p.wallet.PatientID(), out.Height)
		patients[k] = p
	}

	// 3. The practice imports each patient's Bundle.
	s.say("The practice (node%d) imports each patient's synthetic FHIR R4 Bundle: each resource is validated, sealed to the patient and the practice, stored off-chain and anchored on the ledger.", s.practice)
	var anchored uint64
	for k, p := range patients {
		bundle := p.person.Bundle(rnd, nRecords)
		var out struct {
			Records []records.ImportedRecord `json:"records"`
		}
		if err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/patients/"+p.wallet.PatientID().String()+"/records", bundle, "application/fhir+json", &out); err != nil {
			return nil, fmt.Errorf("importing patient %d's records: %w", k+1, err)
		}
		p.records = out.Records
		counts := map[string]int{}
		var top uint64
		for _, r := range out.Records {
			counts[r.ResourceType]++
			top = max(top, r.Height)
		}
		anchored = max(anchored, top)
		types := make([]string, 0, len(counts))
		for t, n := range counts {
			types = append(types, fmt.Sprintf("%d %s", n, t))
		}
		slices.Sort(types)
		s.detail("patient %d: %d records anchored by height %d (%s)", k+1, len(out.Records), top, strings.Join(types, ", "))
	}

	// 4. The specialist tries to read without consent.
	p1 := patients[0]
	target := p1.records[0]
	for _, r := range p1.records {
		if r.ResourceType == "Observation" {
			target = r
			break
		}
	}
	if err := s.waitAll(ctx, anchored); err != nil {
		return nil, err
	}
	if err := s.clinicianSession(ctx, s.specialist); err != nil {
		return nil, err
	}
	readPath := "/v1/records/" + target.ID.String() + "?purpose=" + node.DefaultPurpose
	code, _, data, err := s.callAs(ctx, s.specialist, s.clinician, http.MethodGet, readPath, nil, "")
	if err != nil {
		return nil, err
	}
	switch {
	case code == http.StatusForbidden:
		s.say("A clinician at the specialist (node%d; staff account %s, logged in with their own password) asks for one of patient 1's records (%s %s, record %s) for %s, without consent: refused (HTTP %d).",
			s.specialist, s.clinicianName, article(target.ResourceType), target.ResourceType, short(target.ID.String()), node.DefaultPurpose, code)
		s.detail("reason: %s", apiReason(data))
	case code/100 == 2:
		return nil, fmt.Errorf("the specialist read record %s without consent (HTTP %d): the consent check did not refuse it", short(target.ID.String()), code)
	default:
		return nil, fmt.Errorf("the specialist's read without consent: want a refusal (403), node%d answered %d: %s", s.specialist, code, apiReason(data))
	}

	// 5. Patient 1 consents.
	grant := &chain.ConsentGrant{Grantee: s.provider[s.specialist], Purpose: node.DefaultPurpose, Scope: chain.ConsentScope{Kind: chain.ScopeAll},
		ExpiresMs: time.Now().Add(storyConsent).UnixMilli()}
	if err := grant.Validate(); err != nil {
		return nil, err
	}
	gout, err := s.submit(ctx, s.practice, p1.wallet.SigningKey(), chain.TxConsentGrant, grant)
	if err != nil {
		return nil, fmt.Errorf("patient 1's consent: %w", err)
	}
	s.say("Patient 1 signs a consent with their wallet: the specialist may read all their records for %s until %s (consent %s, height %d).",
		node.DefaultPurpose, time.UnixMilli(grant.ExpiresMs).UTC().Format(time.DateOnly), short(gout.Hash.String()), gout.Height)

	// 6. The specialist reads the record. A holder may still be pushing the new key envelope:
	// retry what is not a refusal for a while.
	if err := s.waitAll(ctx, gout.Height); err != nil {
		return nil, err
	}
	var header http.Header
	err = procnet.WaitFor(ctx, storyStep, time.Second, "the specialist's read with consent", func(ctx context.Context) (bool, error) {
		var err error
		code, header, data, err = s.callAs(ctx, s.specialist, s.clinician, http.MethodGet, readPath, nil, "")
		switch {
		case err != nil:
			return false, err
		case code == http.StatusOK:
			return true, nil
		case code == http.StatusForbidden:
			return false, procnet.Permanent(fmt.Errorf("refused with consent (HTTP %d): %s", code, apiReason(data)))
		}
		return false, fmt.Errorf("HTTP %d: %s", code, apiReason(data))
	})
	if err != nil {
		return nil, err
	}
	var got struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		return nil, fmt.Errorf("the record read is not JSON: %w", err)
	}
	s.say("The specialist asks again: served. node%d decrypted a FHIR %s of %d bytes (content not shown), served by %s.",
		s.specialist, got.ResourceType, len(data), s.holderRole(s.specialist, header.Get("X-MedLedger-Holder")))

	// 7. Patient 1's audit trail shows both attempts.
	spec := s.provider[s.specialist]
	var accesses []records.AccessJSON
	auditPath := "/v1/patients/" + p1.wallet.PatientID().String() + "/accesses"
	err = procnet.WaitFor(ctx, storyStep, 500*time.Millisecond, "the refused and the served access in patient 1's audit trail", func(ctx context.Context) (bool, error) {
		var out struct {
			Accesses []records.AccessJSON `json:"accesses"`
		}
		if err := s.callJSON(ctx, s.practice, http.MethodGet, auditPath, nil, "", &out); err != nil {
			return false, err
		}
		accesses = out.Accesses
		refused, served := false, false
		for _, a := range accesses {
			if a.Accessor == spec && a.Record == target.ID {
				refused = refused || a.Outcome == chain.AccessRefused.String()
				served = served || a.Outcome == chain.AccessServed.String()
			}
		}
		return refused && served, nil
	})
	if err != nil {
		return nil, err
	}
	s.say("Patient 1's audit trail on the ledger (GET %s on node%d) shows both, with the role the clinician asked under (the person is only in node%d's own audit log):", routeOf(auditPath), s.practice, s.specialist)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   \taccessor\trole\trecord\theight\tlogged by\toutcome\n")
	for _, a := range accesses {
		outcome := a.Outcome
		if a.Reason != "" {
			outcome += ": " + apiReason([]byte(a.Reason))
		}
		fmt.Fprintf(tw, "   \t%s\t%s\t%s\t%d\t%s\t%s\n", s.providerRole(a.Accessor), a.Role, short(a.Record.String()), a.Height, s.providerRole(a.Holder), outcome)
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "   Try: medledger wallet audit --dir %s --home %s\n\n", filepath.Dir(p1.wallet.File()), nw.Home(s.practice))
	if err := s.patientChecks(ctx, p1, target.ID, len(accesses)); err != nil {
		return nil, err
	}
	return s.storyMoney(ctx, patients)
}

// patientChecks is the story's last step: patient 1's own wallet, a light client over the wallet
// protocol with the patient's key, verifies the chain and the audit, and reads a record itself.
func (s *story) patientChecks(ctx context.Context, p1 *storyPatient, target chain.Hash, apiAccesses int) error {
	// Proofs are against the newest certified header, whose state is one block behind the
	// node's: wait for the block after the one the API read.
	var ls *ledgerSession
	var ps *light.PatientState
	var accesses []records.AccessJSON
	err := procnet.WaitFor(ctx, storyStep, 500*time.Millisecond, "patient 1's wallet proving the audit", func(ctx context.Context) (bool, error) {
		if ls != nil {
			ls.close()
		}
		var err error
		if ls, err = openLedger(ctx, p1.wallet, &ledgerFlags{}, s.nw.Home(s.practice)); err != nil {
			return false, err
		}
		if ps, err = ls.patientState(ctx, p1.wallet); err != nil {
			return false, err
		}
		accesses, err = records.AccessesJSON(ps.View(), p1.wallet.PatientID(), ps.IDs(state.LogAccess, state.LogReceipt))
		return err == nil && len(accesses) >= apiAccesses, err
	})
	if ls != nil {
		defer ls.close()
	}
	if err != nil {
		return err
	}
	var rec *state.RecordState
	nrec := 0
	for _, it := range ps.Items {
		if it.Record != nil {
			nrec++
			if it.Record.ID == target {
				rec = it.Record
			}
		}
	}
	if rec == nil {
		return fmt.Errorf("patient 1's wallet did not find record %s in the proved log", short(target.String()))
	}
	s.say("Patient 1's own wallet checks all of it, trusting no node: it connects to node%d over the wallet protocol with the patient's key (no API token), verifies %d headers and their certificates from genesis, and proves the patient's whole log against the header of block %d: %d records, %d consent(s), %d accesses, as the API said.",
		s.practice, ps.Header.Height, ps.Header.Height, nrec, len(ps.IDs(state.LogConsent)), len(accesses))
	plain, err := ls.primary.ReadOwn(ctx, p1.wallet.SigningKey(), p1.wallet.EncryptionKey(), rec)
	if err != nil {
		return fmt.Errorf("patient 1 reading their own record: %w", err)
	}
	s.say("Patient 1 reads their own %s (record %s): fetched as themselves, checked against the proved anchor, decrypted in the wallet (%d bytes). The read goes on the ledger like any other, with the patient as the accessor.",
		rec.ResourceType, short(rec.ID.String()), len(plain))
	fmt.Fprintf(s.w, "   Try: medledger wallet records get --dir %s --home %s %s\n\n", filepath.Dir(p1.wallet.File()), s.nw.Home(s.practice), rec.ID)
	return nil
}
