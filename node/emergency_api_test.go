package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/records"
)

// TestEmergencyCoSign: a provider's first break-glass access in a window needs no one else; the
// second is refused by the node itself until an authority's node co-signs it, and the
// co-signature fits that access alone.
func TestEmergencyCoSign(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	p := f.newPatient("erin", true)
	self := f.keys.ID()
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 4096, 8<<10, f.log)
	api.attachRecords(r.Service, f.commits)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	do := func(method, path string, body any) apiAnswer {
		t.Helper()
		data, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(data))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return apiAnswer{resp.StatusCode, resp.Header, out}
	}
	pid := p.id()
	cosignReq := CoSignRequest{Provider: self, Patient: &pid, ReasonCode: "life-threatening"}

	a := do("POST", "/v1/emergency/cosign", cosignReq)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "no authority key")

	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "unable-to-consent"})
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "life-threatening"})
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "needs an authority's co-signature")
	require.Contains(t, a.errorLine(t), "medledger records cosign")

	// A key outside the authority set cannot co-sign.
	notAuthority := testKey(t, "not-an-authority")
	api.coSigner = &notAuthority
	a = do("POST", "/v1/emergency/cosign", cosignReq)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "not in the current authority set")

	authority := testKey(t, "records-authority")
	api.coSigner = &authority
	a = do("POST", "/v1/emergency/cosign", cosignReq)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	var cs CoSignJSON
	require.NoError(t, json.Unmarshal(a.body, &cs))
	require.Equal(t, authority.Public(), cs.CoSigner)
	require.Equal(t, uint32(2), cs.Ordinal)

	// The near miss: the co-signature does not fit another reason code; nor a malformed one.
	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "urgent-treatment", CoSigner: cs.CoSigner.String(), CoSig: cs.CoSig})
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "not for this access")
	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "life-threatening", CoSigner: cs.CoSigner.String(), CoSig: "abcd"})
	require.Equal(t, http.StatusBadRequest, a.code, "%s", a.body)
	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "life-threatening", CoSigner: cs.CoSigner.String()})
	require.Equal(t, http.StatusBadRequest, a.code, "%s", a.body)

	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "life-threatening", CoSigner: cs.CoSigner.String(), CoSig: cs.CoSig})
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	// Used once: the same co-signature does not open a third.
	a = do("POST", "/v1/emergency", EmergencyRequest{Patient: &pid, ReasonCode: "life-threatening", CoSigner: cs.CoSigner.String(), CoSig: cs.CoSig})
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)

	// The patient's consents show both, with reason codes and the co-signature flag.
	f.waitFor("consents indexed", func() bool {
		cs, err := r.Consents(t.Context(), pid)
		return err == nil && len(cs) == 2
	})
	cons, err := r.Consents(t.Context(), pid)
	require.NoError(t, err)
	byReason := map[string]records.ConsentJSON{}
	for _, c := range cons {
		require.True(t, c.Emergency)
		byReason[c.Reason] = c
	}
	require.False(t, byReason["unable-to-consent"].CoSigned)
	require.True(t, byReason["life-threatening"].CoSigned)

}
