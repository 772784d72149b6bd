package index

import "github.com/medledger/medledger/chain"

// Kind is what an Event adds to the index.
type Kind uint8

// The kinds of events a block yields.
const (
	// Anchor: a record anchored (ID, Patient, Author, CiphertextHash).
	Anchor Kind = iota + 1
	// Consent: a consent grant or emergency access (ID: its transaction's hash) of Patient.
	Consent
	// Access: a read logged by its holder or received by its requester (ID: the request id)
	// of Record; its patient is the record's.
	Access
)

// Event is one thing a committed block adds to a patient's lists, in block order. Apply turns
// a block's events into index entries; Events derives them from a block.
type Event struct {
	Kind           Kind
	ID             chain.Hash
	Patient        chain.Address
	Author         chain.Address
	CiphertextHash chain.Hash
	Record         chain.Hash
}

// Events is what b adds to the index, in block order: the anchors, consents, emergency accesses,
// access-log entries and receipts of its transactions. A transaction whose payload does not
// decode adds nothing.
func Events(b *chain.Block) []Event {
	var out []Event
	for _, tx := range b.Txs {
		body, err := chain.DecodePayload(tx.Kind, tx.Payload)
		if err != nil {
			continue
		}
		switch v := body.(type) {
		case *chain.AnchorRecords:
			author := tx.Signer.Address()
			for _, a := range v.Records {
				out = append(out, Event{Kind: Anchor, ID: a.ID, Patient: a.Patient, Author: author, CiphertextHash: a.CiphertextHash})
			}
		case *chain.ConsentGrant:
			out = append(out, Event{Kind: Consent, ID: tx.Hash(), Patient: tx.Signer.Address()})
		case *chain.EmergencyAccess:
			out = append(out, Event{Kind: Consent, ID: tx.Hash(), Patient: v.Patient})
		case *chain.AccessLog:
			for i := range v.Entries {
				out = append(out, Event{Kind: Access, ID: v.Entries[i].Request.ID(), Record: v.Entries[i].Request.Record})
			}
		case *chain.AccessReceipts:
			for i := range v.Receipts {
				out = append(out, Event{Kind: Access, ID: v.Receipts[i].Request.ID(), Record: v.Receipts[i].Request.Record})
			}
		}
	}
	return out
}
