package records

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// TestFHIRLookups: the FHIR face's look-ups find a patient by the Patient id and identifiers
// the import bound, a resource by the Type/id it was imported under (at its current version,
// amendments followed), and a record's versions in order; names nobody was imported under find
// nothing, and the same Type/id imported for two ledger patients is found twice.
func TestFHIRLookups(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	ctx := testCtx(t)
	p := f.newPatient("lookups", true)
	q := f.newPatient("lookups-2", true)
	ips := readTestdata(t, "real/ips-bundle-minimal.json")
	_, err := r.ImportDocument(ctx, p.id(), ips, ImportOptions{})
	require.NoError(t, err)

	const patientID = "7685713c-e29e-4a75-8a90-45be7ba3be94"
	for _, name := range []string{patientID, "?identifier=urn:oid:2.16.840.1.113883.2.4.6.3|574687583"} {
		ps, err := r.PatientsNamed(name)
		require.NoError(t, err)
		require.Equal(t, []chain.Address{p.id()}, ps, name)
	}
	ps, err := r.PatientsNamed("?identifier=urn:oid:2.16.840.1.113883.2.4.6.3|000")
	require.NoError(t, err)
	require.Empty(t, ps)

	m, err := r.FindFHIR(ctx, "Patient", patientID, nil)
	require.NoError(t, err)
	require.Len(t, m, 1)
	require.Equal(t, p.id(), m[0].Patient)
	none, err := r.FindFHIR(ctx, "Observation", patientID, nil)
	require.NoError(t, err)
	require.Empty(t, none, "the id under another type")
	none, err = r.FindFHIR(ctx, "Patient", patientID, []chain.Address{q.id()})
	require.NoError(t, err)
	require.Empty(t, none, "another patient's")

	// Amended: the look-up follows the ledger to the new version; Versions lists both.
	first := m[0].Latest
	res, err := r.Read(ctx, first, "TREAT", false, "clinician")
	require.NoError(t, err)
	amended, err := r.Amend(ctx, first, bytes.Replace(res.JSON, []byte(`"gender":"female"`), []byte(`"gender":"other"`), 1))
	require.NoError(t, err)
	m, err = r.FindFHIR(ctx, "Patient", patientID, nil)
	require.NoError(t, err)
	require.Equal(t, amended.ID, m[0].Latest)
	for _, id := range []chain.Hash{first, amended.ID} {
		vs, err := r.Versions(ctx, id)
		require.NoError(t, err)
		require.Len(t, vs, 2)
		require.Equal(t, first, vs[0].ID)
		require.Equal(t, uint64(1), vs[0].Version)
		require.Equal(t, amended.ID, vs[1].ID)
		require.Equal(t, uint64(2), vs[1].Version)
	}
	_, err = r.Versions(ctx, chain.Hash{1})
	require.ErrorIs(t, err, ErrRecordNotFound)

	// The same document imported for a second ledger patient (its first import binds it): the
	// Patient id and the identifier now name two, which the face refuses as ambiguous.
	_, err = r.ImportDocument(ctx, q.id(), ips, ImportOptions{})
	require.NoError(t, err)
	m, err = r.FindFHIR(ctx, "Patient", patientID, nil)
	require.NoError(t, err)
	require.Len(t, m, 2)
	ps, err = r.PatientsNamed(patientID)
	require.NoError(t, err)
	require.ElementsMatch(t, []chain.Address{p.id(), q.id()}, ps)
}
