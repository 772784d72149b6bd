package records

import "github.com/medledger/medledger/chain"

// Enrol co-signs the registration of patient with encryption key enc as this node's provider:
// a patient registers only with the co-signature of the practice that enrols it. The ledger
// decides whether the enrolment counts (an active provider, under its rate bound).
func (r *Service) Enrol(patient chain.PubKey, enc []byte) *chain.RegisterPatient {
	return chain.NewEnrolment(r.keys.Signing, r.self, r.chainID, patient, enc)
}
