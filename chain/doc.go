// Package chain defines MedLedger's ledger data: transactions, headers, blocks, votes, proposals,
// commit certificates, authority sets and genesis, together with their one canonical encoding
// (deterministic CBOR, see docs/encoding.md) and Ed25519 signatures over domain-separated bytes
// that name the chain, so that nothing signed for one network or one purpose verifies for another.
//
// Every decoder here is strict: it rejects unknown versions, trailing bytes, oversized fields and
// any encoding that is not byte-for-byte canonical, with an error that says which.
package chain
