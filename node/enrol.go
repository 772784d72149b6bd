package node

import (
	"encoding/hex"
	"net/http"

	"github.com/medledger/medledger/chain"
)

// Patient enrolment: a patient registers only with a provider's co-signature (the practice that
// enrols it). The operator API, behind its token, co-signs with this node's provider key; the
// patient's wallet then signs and submits its RegisterPatient transaction itself.

// EnrolRequest asks this node's provider to enrol a patient: the patient's signing key and
// (hex) encryption key, exactly as its registration will carry them.
type EnrolRequest struct {
	PatientKey    chain.PubKey `json:"patient_key"`
	EncryptionKey string       `json:"encryption_key"`
}

// EnrolmentJSON is the co-signature to put in the patient's RegisterPatient.
type EnrolmentJSON struct {
	Enroller    chain.Address `json:"enroller"`
	EnrollerSig string        `json:"enroller_sig"` // hex
}

// enrol is POST /v1/enrolments.
func (a *API) enrol(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	var req EnrolRequest
	if err := decodeJSON(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	enc, err := hex.DecodeString(req.EncryptionKey)
	if err != nil || len(enc) == 0 || len(enc) > chain.MaxEncryptionKeyLen || req.PatientKey == (chain.PubKey{}) {
		writeError(w, http.StatusBadRequest, "an enrolment needs the patient's signing key and a hex encryption key")
		return
	}
	patient := req.PatientKey.Address()
	noteTarget(r, &patient, nil)
	body := a.records.Enrol(req.PatientKey, enc)
	writeJSON(w, http.StatusOK, EnrolmentJSON{Enroller: body.Enroller, EnrollerSig: hex.EncodeToString(body.EnrollerSig[:])})
}
