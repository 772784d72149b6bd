// Package records is the node's record service: FHIR import and sealing, the holder's side of
// the blob exchange (serving fetches and accepting pushes under the ledger's consent rules),
// reads with their audit, wrapping data keys for new grantees, replication and DHT
// announcements, the access journal's flush to the ledger, and export.
//
// It reads and writes the ledger only through Ledger, which the node implements over its
// replica, and the network only through Net and the exchange protocol. Its files follow the
// jobs: import.go, holder.go, read.go, grants.go, replication.go, audit.go, export.go; index.go
// follows committed blocks (the per-patient index, and the reactions to consent and erasure),
// views.go lists a patient's records, consents and accesses. The blob store, the access journal
// and the exchange protocol are the sub-packages blobstore, journal and exchange.
package records
