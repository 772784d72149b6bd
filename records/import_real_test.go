package records

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node/fhir"
)

// realDocuments are the real-world documents of node/fhir/testdata/real (see SOURCES.md there),
// from four sources: Synthea, HL7's International Patient Summary, Medplum and HAPI FHIR.
var realDocuments = []string{
	"synthea-bulk-patient.ndjson",
	"ips-bundle-minimal.json",
	"ips-bundle-no-info-required-sections.json",
	"medplum-chart-demo-patient.json",
	"hapi-observation-conditional-update.json",
	"synthea-claims-transaction.json",
}

// companions are the resource types outside the patient compartment that a document's patient
// resources refer to, and that its import must keep with them.
var companions = map[string][]string{
	"synthea-bulk-patient.ndjson": {"Location", "Organization", "Practitioner"},
	"ips-bundle-minimal.json":     {"Medication", "Organization", "Practitioner"},
	// The claims' provider and the encounters' practitioner.
	"synthea-claims-transaction.json": {"Organization", "Practitioner"},
}

// TestImportRealWorld imports each real-world document for its own patient, exports the
// patient and checks the export: it validates, every reference that resolved within the import
// resolves within the export, and importing the document again anchors nothing. The subtests
// share one service (New compiles the FHIR validator).
func TestImportRealWorld(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	for i, name := range realDocuments {
		t.Run(name, func(t *testing.T) { testRoundTrip(t, f.sub(t), r, fmt.Sprintf("real%d", i), name) })
	}
	t.Run("versions", func(t *testing.T) { testImportVersions(t, f.sub(t), r) })
	t.Run("binding", func(t *testing.T) { testImportBinding(t, f.sub(t), r) })
	t.Run("entries without a resource", func(t *testing.T) { testImportMethods(t, f.sub(t), r) })
	t.Run("the README's sequence", func(t *testing.T) { testImportReadme(t, f.sub(t), r) })
}

// testImportReadme runs the README's imports: a document, again (unchanged), an IPS document of
// another person (refused), and the same linked by its identifier.
func testImportReadme(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("readme", true)
	first, err := r.ImportDocument(ctx, p.id(), readTestdata(t, "bundle-collection.json"), ImportOptions{})
	require.NoError(t, err)
	again, err := r.ImportDocument(ctx, p.id(), readTestdata(t, "bundle-collection.json"), ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, first.Records, again.Records)
	ips := readTestdata(t, "real/ips-bundle-minimal.json")
	_, err = r.ImportDocument(ctx, p.id(), ips, ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson)
	res, err := r.ImportDocument(ctx, p.id(), ips, ImportOptions{Links: []string{"urn:oid:2.16.840.1.113883.2.4.6.3|574687583"}})
	require.NoError(t, err)
	require.Len(t, res.Records, 8)
}

func testRoundTrip(t *testing.T, f *recFixture, r *running, who, name string) {
	ctx := testCtx(t)
	p := f.newPatient(who, true)
	data, err := os.ReadFile(filepath.Join("..", "node", "fhir", "testdata", "real", name))
	require.NoError(t, err)
	in, err := r.fhir.ParseDocument(data)
	require.NoError(t, err)

	var phases []ImportProgress
	res, err := r.ImportDocument(ctx, p.id(), data, ImportOptions{Progress: func(pr ImportProgress) { phases = append(phases, pr) }})
	require.NoError(t, err)
	require.Len(t, res.Entries, len(in.Entries))
	var kept []fhir.Resource
	for i, o := range res.Entries {
		switch o.Outcome {
		case OutcomeCreated:
			kept = append(kept, *in.Entries[i].Resource)
		case OutcomeSkipped:
			t.Logf("skipped %s: %s", o.Resource, o.Message)
		default:
			t.Fatalf("entry %d (%s): %s %s", o.Index, o.Resource, o.Outcome, o.Message)
		}
	}
	require.Len(t, res.Records, len(kept))
	types := map[string]bool{}
	for _, k := range kept {
		types[k.ResourceType] = true
	}
	for _, c := range companions[name] {
		require.True(t, types[c], "no %s kept", c)
	}
	require.NotEmpty(t, phases)
	last := phases[len(phases)-1]
	require.Equal(t, ImportProgress{Phase: "anchored", Done: len(kept), Total: len(kept)}, last)

	// The export validates, holds one resource per kept entry (then the consents and audit
	// events), and each resolves as many entries as it did in the document.
	bundle, err := r.Export(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	out, err := r.fhir.ParseDocument(bundle)
	require.NoError(t, err, "the export does not validate")
	require.GreaterOrEqual(t, len(out.Entries), len(kept))
	resolved := 0
	for i, k := range kept {
		e := out.Entries[i].Resource
		require.Equal(t, k.ResourceType, e.ResourceType, "export entry %d", i)
		if k.ID != "" {
			require.Equal(t, k.ID, e.ID)
		}
		require.Len(t, e.Refs, len(k.Refs), "%s: references resolved in the import %v, in the export %v", k.Name(), k.Refs, e.Refs)
		resolved += len(k.Refs)
	}
	t.Logf("%s: %d entries, %d records, %d references between them resolve in the export", name, len(in.Entries), len(kept), resolved)

	// Importing it again is a no-op.
	before, err := r.List(ctx, p.id())
	require.NoError(t, err)
	again, err := r.ImportDocument(ctx, p.id(), data, ImportOptions{})
	require.NoError(t, err)
	for i, o := range again.Entries {
		if res.Entries[i].Outcome == OutcomeSkipped {
			require.Equal(t, OutcomeSkipped, o.Outcome)
			continue
		}
		require.Equal(t, OutcomeUnchanged, o.Outcome, "entry %d (%s): %s", o.Index, o.Resource, o.Message)
		require.Equal(t, res.Entries[i].Record, o.Record)
	}
	require.Equal(t, res.Records, again.Records)
	after, err := r.List(ctx, p.id())
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// testImportVersions: a changed resource with the same Type/id becomes the record's next
// version; the export holds the current version only.
func testImportVersions(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("versions", true)
	v1 := readTestdata(t, "observation.json")
	first, err := r.ImportDocument(ctx, p.id(), v1, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, OutcomeCreated, first.Entries[0].Outcome)
	v2 := bytes.Replace(v1, []byte(`"value": 132`), []byte(`"value": 141`), 1)
	require.NotEqual(t, v1, v2)
	second, err := r.ImportDocument(ctx, p.id(), v2, ImportOptions{})
	require.NoError(t, err)
	o := second.Entries[0]
	require.Equal(t, OutcomeUpdated, o.Outcome)
	require.Equal(t, uint64(2), o.Version)
	rec := f.record(second.Records[0].ID)
	require.NotNil(t, rec)
	require.Equal(t, first.Records[0].ID, rec.Supersedes)
	require.Equal(t, uint64(2), rec.RecVersion)

	// The first version again is a change too: a third version.
	third, err := r.ImportDocument(ctx, p.id(), v1, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, OutcomeUpdated, third.Entries[0].Outcome)
	require.Equal(t, uint64(3), third.Entries[0].Version)

	// An amendment through Amend is remembered: importing the amended resource is a no-op.
	v4 := bytes.Replace(v1, []byte(`"value": 132`), []byte(`"value": 128`), 1)
	amended, err := r.Amend(ctx, third.Records[0].ID, v4)
	require.NoError(t, err)
	require.Equal(t, uint64(4), amended.Version)
	fourth, err := r.ImportDocument(ctx, p.id(), v4, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, OutcomeUnchanged, fourth.Entries[0].Outcome)
	require.Equal(t, amended.ID, fourth.Records[0].ID)
	fifth, err := r.ImportDocument(ctx, p.id(), v1, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, uint64(5), fifth.Entries[0].Version)

	bundle, err := r.Export(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	doc, err := r.fhir.ParseDocument(bundle)
	require.NoError(t, err)
	n := 0
	for _, e := range doc.Entries {
		if e.Resource.Name() == "Observation/obs-bp-1" {
			n++
			require.Contains(t, string(e.Resource.JSON), `"value":132`)
		}
	}
	require.Equal(t, 1, n, "the export holds Observation/obs-bp-1 %d times", n)
}

// testImportBinding: the ledger patient is bound to the first document's Patient; another
// person's Patient, or a resource about another patient, is refused unless linked.
func testImportBinding(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("bound", true)
	patient := func(id, system, value string) []byte {
		return fmt.Appendf(nil, `{"resourceType":"Patient","id":%q,"identifier":[{"system":%q,"value":%q}]}`, id, system, value)
	}
	_, err := r.ImportDocument(ctx, p.id(), patient("a1", "urn:mrn", "111"), ImportOptions{})
	require.NoError(t, err)
	mode, err := os.Stat(filepath.Join(f.blobDir, "bindings", p.id().String()+".json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), mode.Mode().Perm())
	file, err := os.ReadFile(filepath.Join(f.blobDir, "bindings", p.id().String()+".json"))
	require.NoError(t, err)
	require.NotContains(t, string(file), "urn:mrn", "the binding holds an identifier in clear")
	require.NotContains(t, string(file), `"a1"`, "the binding holds a Patient id in clear")

	// The same person from another system: shares the identifier, brings its own id.
	_, err = r.ImportDocument(ctx, p.id(), []byte(`{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Patient","id":"b7","identifier":[{"system":"urn:mrn","value":"111"},{"system":"urn:other","value":"x"}]}},
		{"resource":{"resourceType":"Condition","id":"c1","code":{"text":"Asthma"},"subject":{"reference":"Patient/b7"}}}]}`), ImportOptions{})
	require.NoError(t, err)

	// Someone else: refused, naming the entry and the binding.
	other := patient("z9", "urn:mrn", "999")
	_, err = r.ImportDocument(ctx, p.id(), other, ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson)
	var ie *ImportError
	require.ErrorAs(t, err, &ie)
	require.Len(t, ie.Refused(), 1)
	require.Contains(t, ie.Refused()[0].Message, "identifier urn:mrn|999")
	obs := []byte(`{"resourceType":"Observation","id":"o-z","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/z9"}}`)
	_, err = r.ImportDocument(ctx, p.id(), obs, ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson)
	require.Contains(t, err.Error(), "refers to Patient/z9")

	// Linked by the operator, the same documents are imported, and the link stays.
	_, err = r.ImportDocument(ctx, p.id(), other, ImportOptions{Links: []string{"urn:mrn|999"}})
	require.NoError(t, err)
	_, err = r.ImportDocument(ctx, p.id(), obs, ImportOptions{})
	require.NoError(t, err)
	_, err = r.ImportDocument(ctx, p.id(), obs, ImportOptions{Links: []string{"nonsense"}})
	require.ErrorIs(t, err, ErrBadRequest)
}

// testImportMethods: DELETE and GET entries of a transaction are named with their method, and
// nothing of the transaction is anchored.
func testImportMethods(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("methods", true)
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:6f0a3cc8-6a63-4a8d-9d0c-1d1f4f0e0001","resource":{"resourceType":"Patient","id":"m1"},"request":{"method":"PUT","url":"Patient/m1"}},
		{"request":{"method":"DELETE","url":"Observation/old"}},
		{"request":{"method":"GET","url":"Observation?patient=m1"}}]}`)
	_, err := r.ImportDocument(ctx, p.id(), tx, ImportOptions{})
	require.ErrorIs(t, err, ErrInvalidFHIR)
	var ie *ImportError
	require.ErrorAs(t, err, &ie)
	refused := ie.Refused()
	require.Len(t, refused, 2)
	require.Equal(t, 1, refused[0].Index)
	require.Equal(t, "DELETE", refused[0].Method)
	require.Contains(t, refused[0].Message, "DELETE Observation/old is not applied")
	require.Contains(t, refused[1].Message, "GET Observation?patient=m1 reads")
	require.NotContains(t, err.Error(), "invalid FHIR: fhir:")
	l, err := r.List(ctx, p.id())
	require.NoError(t, err)
	require.Empty(t, l)
}

// TestImportRememberedAcrossRestart: a restarted service (its index closed and opened again)
// still recognizes what it imported: the same document is unchanged, the patient still bound.
func TestImportRememberedAcrossRestart(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	ctx := testCtx(t)
	p := f.newPatient("restart", true)
	data := readTestdata(t, "real/ips-bundle-minimal.json")
	first, err := r.ImportDocument(ctx, p.id(), data, ImportOptions{})
	require.NoError(t, err)
	r.stop(t)
	require.NoError(t, r.Close())

	r2 := f.run(f.newRecords())
	again, err := r2.ImportDocument(ctx, p.id(), data, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, first.Records, again.Records)
	for _, o := range again.Entries {
		require.Equal(t, OutcomeUnchanged, o.Outcome, "%+v", o)
	}
	_, err = r2.ImportDocument(ctx, p.id(), readTestdata(t, "observation.json"), ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson, "the binding is kept across the restart")
}
