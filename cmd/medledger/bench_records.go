package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/medledger/medledger/node"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/wallet/envelope"
)

// The records phase of `medledger bench`: FHIR import throughput, grant-to-first-read latency
// and fetch-and-decrypt latency of a large record (docs/bench.md, "Records").
const (
	recordsPerBundle = 100 // one Patient and 99 Observations per import request
	importWorkers    = 4   // concurrent import requests to node0
	grantSamples     = 10  // patients whose grant-to-first-read latency is measured
	grantPoll        = 20 * time.Millisecond
	largeReads       = 20 // sequential reads of the large record per reading node
	benchPurpose     = "TREAT"
)

// recordsReport is the records phase's outcome (the "records" member of --json).
type recordsReport struct {
	Records     int     `json:"records"`
	Patients    int     `json:"patients"`
	Workers     int     `json:"import_workers"`
	BundleBytes float64 `json:"bundle_bytes_avg"`

	RegisterSeconds float64 `json:"register_seconds"`

	ImportSeconds float64 `json:"import_seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	// ReplicatedSeconds is from the first POST until every imported record is on its
	// params.replicas holders besides node0 (blob files counted in the nodes' homes);
	// ReplicatedPerSec = records ÷ that time. Zero if replication did not complete in time.
	Replicas          int     `json:"replicas"`
	ReplicatedSeconds float64 `json:"replicated_seconds"`
	ReplicatedPerSec  float64 `json:"replicated_records_per_sec"`
	BundleP50Ms       float64 `json:"bundle_p50_ms"`
	BundleP99Ms       float64 `json:"bundle_p99_ms"`
	NodeCPUSeconds    float64 `json:"node_cpu_seconds"`  // all nodes, during the import
	Node0CPUSeconds   float64 `json:"node0_cpu_seconds"` // the importing node alone
	RecordsPerCPUSec  float64 `json:"records_per_node_cpu_second"`
	CPUPerRecordMs    float64 `json:"node_cpu_ms_per_record"`
	// VerifyEquivPerRecord is the node CPU per record expressed in Ed25519 verifications of
	// this machine (same run); RatioToCeiling is records/s ÷ the transaction verification
	// ceiling (verifications/s per core × cores ÷ authorities).
	VerifyEquivPerRecord float64 `json:"node_cpu_per_record_in_verifications"`
	RatioToCeiling       float64 `json:"records_per_sec_over_verify_ceiling"`

	GrantReader     int              `json:"grant_reader_node"`
	GrantSamples    int              `json:"grant_samples"`
	GrantP50Ms      float64          `json:"grant_to_first_read_p50_ms"`
	GrantP99Ms      float64          `json:"grant_to_first_read_p99_ms"`
	GrantMaxMs      float64          `json:"grant_to_first_read_max_ms"`
	GrantCommitP50  float64          `json:"grant_commit_p50_ms"` // POST ?wait=commit answered by node0
	GrantPolls403   int              `json:"grant_refused_polls"` // 403s seen while polling, all samples
	GrantHolders    []string         `json:"grant_first_read_holders"`
	LargePlainBytes int              `json:"large_plaintext_bytes"`
	LargeCTBytes    uint64           `json:"large_ciphertext_bytes"`
	LargeImportMs   float64          `json:"large_import_ms"`
	LargeReads      []largeReadStats `json:"large_reads"`
}

// largeReadStats summarizes reads of the large record of one kind.
type largeReadStats struct {
	Kind    string  `json:"kind"` // "remote", "local (author)", "local (replica)"
	Nodes   string  `json:"nodes"`
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MiBps   float64 `json:"mib_per_sec_at_p50"`
}

// recBench drives the records phase.
type recBench struct {
	nw       *procnet.Network
	chainID  string
	progress io.Writer
	enroller chain.PrivKey // node0's provider key: it enrols the bench's patients
}

// call sends one authenticated request to node i and returns status, headers and body.
func (rb *recBench) call(ctx context.Context, i int, method, path string, body []byte) (int, http.Header, []byte, error) {
	ctype := ""
	if body != nil {
		ctype = "application/json"
	}
	return rb.nw.Request(ctx, i, method, path, ctype, body)
}

// callJSON does a request that must answer want and decodes the answer into out.
func (rb *recBench) callJSON(ctx context.Context, i int, method, path string, body []byte, want int, out any) error {
	code, _, b, err := rb.call(ctx, i, method, path, body)
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("node%d: %s %s answered %d (want %d): %s", i, method, path, code, want, shorten(b, 300))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("node%d: %s %s: decoding %s: %w", i, method, path, shorten(b, 200), err)
	}
	return nil
}

func shorten(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// benchPatient is a synthetic patient: ledger key, encryption key, FHIR id, imported records.
type benchPatient struct {
	key     chain.PrivKey
	addr    chain.Address
	fhirID  string
	bundle  []byte
	records []importedRec
}

type importedRec struct {
	ID           string `json:"id"`
	ResourceType string `json:"resourceType"`
	Version      uint64 `json:"version"`
	Height       uint64 `json:"height"`
}

func newBenchPatient(i int) (*benchPatient, error) {
	k, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &benchPatient{key: k, addr: k.Public().Address(), fhirID: fmt.Sprintf("bench-%05d", i)}, nil
}

// vitals are the Observations a synthetic record is made of: LOINC code, display, category,
// UCUM unit, and a base value.
var vitals = []struct {
	code, display, category, unit string
	base                          float64
}{
	{"8867-4", "Heart rate", "vital-signs", "/min", 60},
	{"8310-5", "Body temperature", "vital-signs", "Cel", 36.5},
	{"9279-1", "Respiratory rate", "vital-signs", "/min", 14},
	{"8480-6", "Systolic blood pressure", "vital-signs", "mm[Hg]", 115},
	{"8462-4", "Diastolic blood pressure", "vital-signs", "mm[Hg]", 75},
	{"29463-7", "Body weight", "vital-signs", "kg", 70},
	{"2708-6", "Oxygen saturation in Arterial blood", "vital-signs", "%", 95},
	{"2339-0", "Glucose [Mass/volume] in Blood", "laboratory", "mg/dL", 90},
}

// observationsBundle is a FHIR R4 collection Bundle: the patient's Patient resource and n-1
// Observations whose subject is Patient/<fhirID>.
func observationsBundle(fhirID string, n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	fmt.Fprintf(&b, `{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Patient","id":%q,"name":[{"family":"Bench","given":[%q]}],"gender":"unknown","birthDate":"1970-01-01"}}`,
		benchUUID(0), fhirID, fhirID)
	for i := 1; i < n; i++ {
		v := vitals[i%len(vitals)]
		fmt.Fprintf(&b, `,{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Observation","status":"final",`+
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":%q}]}],`+
			`"code":{"coding":[{"system":"http://loinc.org","code":%q,"display":%q}]},"subject":{"reference":"Patient/%s"},`+
			`"effectiveDateTime":"2024-%02d-%02dT%02d:%02d:00Z","valueQuantity":{"value":%.1f,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}}`,
			benchUUID(i), v.category, v.code, v.display, fhirID, 1+i%12, 1+i%28, i%24, i%60, v.base+float64(i%7), v.unit, v.unit)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func benchUUID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// documentBundle is a Bundle of the patient's Patient resource and one DocumentReference whose
// attachment carries random data, sized so that the DocumentReference is about size bytes.
func documentBundle(fhirID string, size int) []byte {
	doc := func(data string) string {
		return fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current",`+
			`"type":{"coding":[{"system":"http://loinc.org","code":"34133-9","display":"Summary of episode note"}]},`+
			`"subject":{"reference":"Patient/%s"},"date":"2024-01-15T10:00:00Z",`+
			`"content":[{"attachment":{"contentType":"application/octet-stream","title":"bench payload","data":%q}}]}`, fhirID, data)
	}
	raw := make([]byte, max(3, (size-len(doc(""))))/4*3)
	_, _ = rand.Read(raw)
	return fmt.Appendf(nil, `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":%q,"gender":"unknown"}},{"resource":%s}]}`,
		fhirID, doc(base64.StdEncoding.EncodeToString(raw)))
}

// runRecords measures import, grant-to-first-read and large-record reads on a running network.
func runRecords(ctx context.Context, nw *procnet.Network, g *chain.Genesis, progress io.Writer, n int, mib float64, verifyPerCore float64, cores int) (*recordsReport, error) {
	if nw.N < 2 {
		return nil, errors.New("the records phase needs at least 2 authorities (a reader besides the importing node0)")
	}
	if mib <= 0 {
		return nil, errors.New("--record-mib must be positive")
	}
	rb := &recBench{nw: nw, chainID: g.ChainID, progress: progress}
	rep := &recordsReport{Records: n, Workers: importWorkers, GrantReader: min(2, nw.N-1)}

	fmt.Fprintf(progress, "records: waiting for every node's provider to be registered...\n")
	providers, err := rb.waitProviders(ctx)
	if err != nil {
		return nil, err
	}
	if rb.enroller, err = node.ReadKeyFile(node.Resolve(nw.Home(0), node.DefaultConfig().Records.ProviderKey)); err != nil {
		return nil, err
	}

	// Patients: one Bundle of up to 100 records each, plus one for the large record.
	p := (n + recordsPerBundle - 1) / recordsPerBundle
	rep.Patients = p
	pats := make([]*benchPatient, p+1)
	total := 0
	for i := range pats {
		if pats[i], err = newBenchPatient(i); err != nil {
			return nil, err
		}
		if i < p {
			k := min(recordsPerBundle, n-i*recordsPerBundle)
			pats[i].bundle = observationsBundle(pats[i].fhirID, k)
			total += len(pats[i].bundle)
		}
	}
	rep.BundleBytes = float64(total) / float64(p)
	fmt.Fprintf(progress, "records: registering %d patients...\n", len(pats))
	t := time.Now()
	if err := rb.registerPatients(ctx, pats); err != nil {
		return nil, err
	}
	rep.RegisterSeconds = time.Since(t).Seconds()

	// Import.
	fmt.Fprintf(progress, "records: importing %d records in %d bundles (%.0f KiB each) at node0, %d concurrent requests...\n", n, p, rep.BundleBytes/1024, importWorkers)
	cpu0, cpuAll0, err := rb.cpu()
	if err != nil {
		return nil, err
	}
	lat := &latencies{}
	start := time.Now()
	if err := rb.importAll(ctx, pats[:p], lat); err != nil {
		return nil, fmt.Errorf("%w\n  (now: %s; node logs in %s)", err, rb.heights(ctx), nw.Dir)
	}
	rep.ImportSeconds = time.Since(start).Seconds()
	cpu1, cpuAll1, err := rb.cpu()
	if err != nil {
		return nil, err
	}
	rep.RecordsPerSec = float64(n) / rep.ImportSeconds
	rep.BundleP50Ms, rep.BundleP99Ms, _, _ = lat.summary()
	rep.NodeCPUSeconds = (cpuAll1 - cpuAll0).Seconds()
	rep.Node0CPUSeconds = (cpu1 - cpu0).Seconds()
	if rep.NodeCPUSeconds > 0 {
		rep.RecordsPerCPUSec = float64(n) / rep.NodeCPUSeconds
		rep.CPUPerRecordMs = 1000 * rep.NodeCPUSeconds / float64(n)
		rep.VerifyEquivPerRecord = rep.NodeCPUSeconds / float64(n) * verifyPerCore
	}
	if ceiling := verifyPerCore * float64(cores) / float64(nw.N); ceiling > 0 {
		rep.RatioToCeiling = rep.RecordsPerSec / ceiling
	}
	fmt.Fprintf(progress, "  %d records in %.1f s: %.0f records/s; bundle p50 %.0f ms, p99 %.0f ms; node CPU %.1f s (node0 %.1f s)\n",
		n, rep.ImportSeconds, rep.RecordsPerSec, rep.BundleP50Ms, rep.BundleP99Ms, rep.NodeCPUSeconds, rep.Node0CPUSeconds)

	// Replication: every record on its replicas (nodes other than node0).
	rep.Replicas = g.Params.ReplicaCount()
	if rep.Replicas > 0 && nw.N > rep.Replicas {
		want := rep.Replicas * n
		deadline := time.Now().Add(replicationWait)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if rb.replicaBlobs() >= want {
				rep.ReplicatedSeconds = time.Since(start).Seconds()
				rep.ReplicatedPerSec = float64(n) / rep.ReplicatedSeconds
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rep.ReplicatedSeconds > 0 {
			fmt.Fprintf(progress, "  replicated: all %d records on their %d replicas %.1f s after the first POST: %.0f records/s\n",
				n, rep.Replicas, rep.ReplicatedSeconds, rep.ReplicatedPerSec)
		} else {
			fmt.Fprintf(progress, "  replicated: %d of %d replica copies after %s\n", rb.replicaBlobs(), want, replicationWait)
		}
	}

	// Grant to first read.
	if err := rb.grants(ctx, pats[:min(grantSamples, p)], providers[rep.GrantReader], rep); err != nil {
		return nil, err
	}

	// The large record.
	if err := rb.large(ctx, pats[p], providers, int(mib*(1<<20)), rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// waitProviders waits until every node reports its provider registered and returns the ids.
func (rb *recBench) waitProviders(ctx context.Context) ([]chain.Address, error) {
	ids := make([]chain.Address, rb.nw.N)
	done := make([]bool, rb.nw.N)
	err := procnet.WaitFor(ctx, 2*time.Minute, 200*time.Millisecond, "every node's provider registered", func(ctx context.Context) (bool, error) {
		all := true
		for i := range rb.nw.N {
			if done[i] {
				continue
			}
			var st struct {
				ProviderID         *chain.Address `json:"provider_id"`
				ProviderRegistered bool           `json:"provider_registered"`
			}
			if err := rb.callJSON(ctx, i, http.MethodGet, "/v1/status", nil, http.StatusOK, &st); err != nil {
				return false, err
			}
			if st.ProviderID == nil {
				return false, procnet.Permanent(fmt.Errorf("node%d has no provider key (provider_id is null)", i))
			}
			ids[i], done[i] = *st.ProviderID, st.ProviderRegistered
			all = all && done[i]
		}
		return all, nil
	})
	return ids, err
}

// registerPatients submits every patient's registration (nonce 1) to node0 in batches and
// waits until the last is committed.
func (rb *recBench) registerPatients(ctx context.Context, pats []*benchPatient) error {
	for from := 0; from < len(pats); from += 500 {
		var enc [][]byte
		for _, p := range pats[from:min(from+500, len(pats))] {
			ek, err := envelope.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			body := chain.NewEnrolment(rb.enroller, rb.enroller.Public().Address(), rb.chainID, p.key.Public(), ek.Public().Bytes())
			enc = append(enc, chain.NewTx(p.key, rb.chainID, chain.TxRegisterPatient, 1, body).Encode())
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := rb.nw.SubmitEncoded(sctx, 0, enc)
		cancel()
		if err != nil {
			return fmt.Errorf("registering patients: %w", err)
		}
		if len(res.Errors) > 0 {
			return fmt.Errorf("registering patients: node0 refused %d: %s", len(res.Errors), res.Errors[0])
		}
	}
	next := 0
	return procnet.WaitFor(ctx, 2*time.Minute, 100*time.Millisecond, "patient registrations committed on node0", func(ctx context.Context) (bool, error) {
		for next < len(pats) {
			var acc struct {
				Patient bool `json:"patient"`
			}
			if err := rb.callJSON(ctx, 0, http.MethodGet, "/v1/accounts/"+pats[next].addr.String(), nil, http.StatusOK, &acc); err != nil {
				return false, err
			}
			if !acc.Patient {
				return false, nil
			}
			next++
		}
		return true, nil
	})
}

// importAll posts every patient's Bundle to node0 with importWorkers concurrent requests.
func (rb *recBench) importAll(ctx context.Context, pats []*benchPatient, lat *latencies) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *benchPatient)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		done     int
	)
	for range importWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				t0 := time.Now()
				var out struct {
					Records []importedRec `json:"records"`
				}
				err := rb.callJSON(ctx, 0, http.MethodPost, "/v1/patients/"+p.addr.String()+"/records", p.bundle, http.StatusCreated, &out)
				if err == nil && len(out.Records) != bytes.Count(p.bundle, []byte(`"resource":`)) {
					err = fmt.Errorf("import for %s answered %d records for a bundle of %d", p.fhirID, len(out.Records), bytes.Count(p.bundle, []byte(`"resource":`)))
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("import: %w", err)
					cancel()
				}
				if err == nil {
					p.records = out.Records
					lat.add(time.Since(t0))
					done++
					if done%25 == 0 {
						fmt.Fprintf(rb.progress, "  %d of %d bundles imported\n", done, len(pats))
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range pats {
		select {
		case jobs <- p:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// cpu returns node0's CPU time and the sum over all nodes.
func (rb *recBench) cpu() (node0, all time.Duration, err error) {
	for i := range rb.nw.N {
		u, err := rb.nw.Usage(i)
		if err != nil {
			return 0, 0, err
		}
		if i == 0 {
			node0 = u.CPU
		}
		all += u.CPU
	}
	return node0, all, nil
}

// grantTx is the patient's consent for grantee to read all their records for TREAT.
func (rb *recBench) grantTx(p *benchPatient, nonce uint64, grantee chain.Address) []byte {
	g := &chain.ConsentGrant{Grantee: grantee, Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: benchPurpose}
	return chain.NewTx(p.key, rb.chainID, chain.TxConsentGrant, nonce, g).Encode()
}

// submitCommit posts one transaction to node0 and waits for its commit there.
func (rb *recBench) submitCommit(ctx context.Context, raw []byte) error {
	body, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(raw)})
	return rb.callJSON(ctx, 0, http.MethodPost, "/v1/txs?wait=commit", body, http.StatusOK, nil)
}

// grants measures, for each patient in turn, the time from submitting a consent grant (for the
// reader node's provider) to node0 until the reader node first serves one of the patient's
// records.
func (rb *recBench) grants(ctx context.Context, pats []*benchPatient, grantee chain.Address, rep *recordsReport) error {
	reader := rep.GrantReader
	fmt.Fprintf(rb.progress, "records: grant-to-first-read on node%d for %d patients...\n", reader, len(pats))
	var lat, commit []time.Duration
	for _, p := range pats {
		if len(p.records) == 0 {
			return fmt.Errorf("patient %s has no imported records", p.fhirID)
		}
		id := p.records[min(1, len(p.records)-1)].ID // an Observation where there is one
		raw := rb.grantTx(p, 2, grantee)
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		type result struct {
			at      time.Time
			holder  string
			refused int
			err     error
		}
		first := make(chan result, 1)
		t0 := time.Now()
		go func() {
			var r result
			var last string
			tick := time.NewTicker(grantPoll)
			defer tick.Stop()
			for {
				code, hdr, b, err := rb.call(pctx, reader, http.MethodGet, "/v1/records/"+id+"?purpose="+benchPurpose, nil)
				switch {
				case err == nil && code == http.StatusOK:
					r.at, r.holder = time.Now(), hdr.Get("X-MedLedger-Holder")
					first <- r
					return
				case err == nil && code == http.StatusForbidden:
					r.refused++
				case err == nil:
					last = fmt.Sprintf("%d %s", code, shorten(b, 200))
				default:
					last = err.Error()
				}
				select {
				case <-pctx.Done():
					r.err = fmt.Errorf("node%d did not serve record %s of %s within 1 min of the grant (last answer other than 403: %s)", reader, id, p.fhirID, last)
					first <- r
					return
				case <-tick.C:
				}
			}
		}()
		err := rb.submitCommit(pctx, raw)
		tc := time.Since(t0)
		r := <-first
		cancel()
		if err != nil {
			return fmt.Errorf("consent grant for %s: %w", p.fhirID, err)
		}
		if r.err != nil {
			return r.err
		}
		lat = append(lat, r.at.Sub(t0))
		commit = append(commit, tc)
		rep.GrantPolls403 += r.refused
		rep.GrantHolders = append(rep.GrantHolders, r.holder)
		fmt.Fprintf(rb.progress, "  %s: committed on node0 after %.0f ms, first read on node%d after %.0f ms (holder %s, %d refused polls)\n",
			p.fhirID, ms(tc), reader, ms(r.at.Sub(t0)), holderName(r.holder), r.refused)
	}
	rep.GrantSamples = len(lat)
	rep.GrantP50Ms, rep.GrantP99Ms, rep.GrantMaxMs = quantiles(lat)
	rep.GrantCommitP50, _, _ = quantiles(commit)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func holderName(h string) string {
	if h == "local" || len(h) <= 16 {
		return h
	}
	return "peer …" + h[len(h)-8:]
}

// quantiles returns p50, p99 and max of ds in milliseconds.
func quantiles(ds []time.Duration) (p50, p99, top float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 { return ms(s[min(len(s)-1, int(p*float64(len(s))))]) }
	return q(0.50), q(0.99), ms(s[len(s)-1])
}

// large imports one record of about size bytes for a patient who consented to every other
// node, then reads it largeReads times on each node and sorts the reads by where they were
// served from: node0 (the author) reads its own copy, a replica reads its pushed copy, and the
// others fetch it from a holder over libp2p. Every read verifies the ciphertext hash, unwraps
// the data key (HPKE) and decrypts (AEAD).
func (rb *recBench) large(ctx context.Context, p *benchPatient, providers []chain.Address, size int, rep *recordsReport) error {
	fmt.Fprintf(rb.progress, "records: large record (%.2f MiB): consent for nodes 1..%d, import at node0, %d reads per node...\n", float64(size)/(1<<20), rb.nw.N-1, largeReads)
	for i := 1; i < rb.nw.N; i++ {
		gctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := rb.submitCommit(gctx, rb.grantTx(p, uint64(i+1), providers[i]))
		cancel()
		if err != nil {
			return fmt.Errorf("consent grant for the large record's patient (node%d): %w", i, err)
		}
	}
	p.bundle = documentBundle(p.fhirID, size)
	var out struct {
		Records []importedRec `json:"records"`
	}
	t0 := time.Now()
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := rb.callJSON(ictx, 0, http.MethodPost, "/v1/patients/"+p.addr.String()+"/records", p.bundle, http.StatusCreated, &out)
	cancel()
	if err != nil {
		return fmt.Errorf("import of the large record: %w", err)
	}
	rep.LargeImportMs = ms(time.Since(t0))
	var id string
	for _, r := range out.Records {
		if r.ResourceType == "DocumentReference" {
			id = r.ID
		}
	}
	if id == "" {
		return fmt.Errorf("import of the large record answered no DocumentReference: %+v", out.Records)
	}
	var list struct {
		Records []struct {
			ID   string `json:"id"`
			Size uint64 `json:"size"`
		} `json:"records"`
	}
	if err := rb.callJSON(ctx, 0, http.MethodGet, "/v1/patients/"+p.addr.String()+"/records", nil, http.StatusOK, &list); err == nil {
		for _, r := range list.Records {
			if r.ID == id {
				rep.LargeCTBytes = r.Size
			}
		}
	}
	// Replication to the replica holders runs in the background after the import answers; give
	// it a moment so that steady-state reads are measured (each read says where it came from).
	time.Sleep(3 * time.Second)

	type kindReads struct {
		nodes []int
		d     []time.Duration
	}
	kinds := map[string]*kindReads{}
	for i := range rb.nw.N {
		for k := range largeReads {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			t := time.Now()
			code, hdr, b, err := rb.call(rctx, i, http.MethodGet, "/v1/records/"+id+"?purpose="+benchPurpose, nil)
			d := time.Since(t)
			cancel()
			if err != nil {
				return fmt.Errorf("reading the large record on node%d: %w", i, err)
			}
			if code != http.StatusOK {
				return fmt.Errorf("reading the large record on node%d: %d %s", i, code, shorten(b, 300))
			}
			if i == 0 && k == 0 {
				rep.LargePlainBytes = len(b)
			} else if len(b) != rep.LargePlainBytes {
				return fmt.Errorf("node%d served %d bytes of the large record, node0 %d", i, len(b), rep.LargePlainBytes)
			}
			kind := "remote fetch"
			switch {
			case hdr.Get("X-MedLedger-Holder") != "local":
			case i == 0:
				kind = "local (author)"
			default:
				kind = "local (replica)"
			}
			kr := kinds[kind]
			if kr == nil {
				kr = &kindReads{}
				kinds[kind] = kr
			}
			if !slices.Contains(kr.nodes, i) {
				kr.nodes = append(kr.nodes, i)
			}
			kr.d = append(kr.d, d)
		}
	}
	for _, kind := range []string{"remote fetch", "local (replica)", "local (author)"} {
		kr := kinds[kind]
		if kr == nil {
			continue
		}
		s := largeReadStats{Kind: kind, Samples: len(kr.d)}
		var names []string
		for _, i := range kr.nodes {
			names = append(names, fmt.Sprintf("node%d", i))
		}
		s.Nodes = strings.Join(names, ",")
		s.P50Ms, s.P99Ms, _ = quantiles(kr.d)
		if s.P50Ms > 0 {
			s.MiBps = float64(rep.LargePlainBytes) / (1 << 20) / (s.P50Ms / 1000)
		}
		rep.LargeReads = append(rep.LargeReads, s)
		fmt.Fprintf(rb.progress, "  %s on %s: p50 %.1f ms, p99 %.1f ms (%d reads)\n", kind, s.Nodes, s.P50Ms, s.P99Ms, s.Samples)
	}
	return nil
}

func printRecordsBench(w io.Writer, r *recordsReport, authorities, cores int) {
	fmt.Fprintf(w, "\nRecords: %d FHIR resources (%d patients × 1 Patient + up to 99 Observations, one Bundle of %.0f KiB each) imported at node0 by %d concurrent requests\n\n",
		r.Records, r.Patients, r.BundleBytes/1024, r.Workers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "patient registrations (%d, one batch, to commit)\t%.1f s\n", r.Patients+1, r.RegisterSeconds)
	fmt.Fprintf(tw, "import: records/s\t%.0f (%d records in %.1f s; per 100-record bundle p50 %.0f ms, p99 %.0f ms)\n", r.RecordsPerSec, r.Records, r.ImportSeconds, r.BundleP50Ms, r.BundleP99Ms)
	if r.ReplicatedSeconds > 0 {
		fmt.Fprintf(tw, "import and replication: records/s\t%.0f (every record on its %d replicas %.1f s after the first POST)\n", r.ReplicatedPerSec, r.Replicas, r.ReplicatedSeconds)
	}
	fmt.Fprintf(tw, "import: node CPU, all %d nodes\t%.1f s (node0 %.1f s) = %.2f ms per record, %.0f records per core-second\n", authorities, r.NodeCPUSeconds, r.Node0CPUSeconds, r.CPUPerRecordMs, r.RecordsPerCPUSec)
	fmt.Fprintf(tw, "import vs Ed25519 (same run)\tnode CPU per record = %.1f verifications; records/s = %.1f%% of the tx verification ceiling (%d cores)\n", r.VerifyEquivPerRecord, 100*r.RatioToCeiling, cores)
	fmt.Fprintf(tw, "grant-to-first-read on node%d\tp50 %.0f ms, p99 %.0f ms, max %.0f ms (%d grants; node0 answered wait=commit at p50 %.0f ms; %d refused polls)\n",
		r.GrantReader, r.GrantP50Ms, r.GrantP99Ms, r.GrantMaxMs, r.GrantSamples, r.GrantCommitP50, r.GrantPolls403)
	fmt.Fprintf(tw, "large record\t%d bytes of FHIR JSON (ciphertext %d bytes), imported in %.0f ms\n", r.LargePlainBytes, r.LargeCTBytes, r.LargeImportMs)
	for _, s := range r.LargeReads {
		fmt.Fprintf(tw, "fetch-and-decrypt, %s (%s)\tp50 %.1f ms, p99 %.1f ms, %.0f MiB/s at p50 (%d reads)\n", s.Kind, s.Nodes, s.P50Ms, s.P99Ms, s.MiBps, s.Samples)
	}
	_ = tw.Flush()
}

// heights describes every node's height, for an error message.
func (rb *recBench) heights(ctx context.Context) string {
	var parts []string
	for i := range rb.nw.N {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := rb.nw.Status(qctx, i)
		cancel()
		if err != nil {
			parts = append(parts, fmt.Sprintf("node%d: %v", i, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("node%d at height %d with %d peers", i, st.Height, len(st.Peers)))
	}
	return strings.Join(parts, "; ")
}
