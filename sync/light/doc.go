// Package light is the wallet protocol's ledger half: a member node serves headers, commit
// certificates and state proofs over libp2p, and a light client (a patient's wallet) verifies
// them from genesis, trusting no node.
//
// The client starts from the genesis authority set (or a header the user confirms) and accepts
// headers one height at a time: each must link to the one before, carry a certificate from more
// than two thirds of the set its predecessor named, and, when the set changes, come with a proof
// of the new set against its own state root. Proofs of state keys are then checked against the
// newest accepted header, whose StateRoot commits to the state after the block before it. With
// the patient log (chain/state/patientlog.go) a wallet proves that it was told every record,
// consent, access entry and receipt about its patient.
//
// A wallet peer (a registered patient, admitted to the wallet protocol only) may prove keys about
// its own patient and the public authority set; members may prove any key. Every request is
// bounded in size and count and rate-limited per peer.
package light
