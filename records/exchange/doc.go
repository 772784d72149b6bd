// Package exchange is the encrypted record blob exchange: the direct libp2p protocol through
// which providers fetch a record from its holders and push a record (or new envelopes) to them.
// The holder's side decides through a Handler (the record service, records.Service); the files
// live in records/blobstore and the access journal in records/journal.
//
// Nothing here decrypts: a ciphertext is addressed by its SHA-256 (chain.Sum256), which is the
// CiphertextHash a RecordAnchor fixes on the ledger, so every copy can be checked before it is
// stored or opened.
//
// # Protocol
//
// ProtocolID(chainID) carries one request and one response per stream. Every message is the
// canonical CBOR encoding (chain.Encode) of a versioned struct, framed with a uvarint length
// prefix that is checked against a named limit before any memory is committed. A stream has a
// 30 s deadline and is reset on any error.
//
//   - A fetch carries an encoded chain.AccessRequest signed by the requester. The server decodes
//     and verifies it under its chain id before its Handler sees it; the handler decides (consent,
//     emergency access), logs the request (see records/journal) and answers with a FetchResponse.
//   - A push carries a PushRequest signed by the sending provider (DomainPush): the record, its
//     ciphertext hash, optionally the ciphertext itself and any envelopes. The server checks the
//     signature and that the ciphertext hashes to CiphertextHash before its Handler sees it.
//   - A pull carries a PullRequest (record id and anchored ciphertext hash): a holder the ledger
//     assigns to the record repairs its replica. The Handler decides on the stream's peer id
//     and answers with a FetchResponse carrying the ciphertext and every envelope it holds; the
//     client checks the ciphertext against the hash. Not a read: nothing is logged.
//
// A holder over a sender's quota answers StatusBusy (ErrBusy): the same request may succeed
// later.
//
// Malformed frames, bad signatures, hash mismatches and rate-limit abuse are reported through
// ServerOptions.Penalize. The handler is called at most once per stream and only with a request
// that decoded, validated and verified.
//
// FetchFrom asks a record's holders in turn with one signed request (the ledger accepts one
// access entry per request id, so a request seen by several holders is logged once), skips
// holders that do not have the record or serve a copy that does not hash to the anchored
// CiphertextHash, and stops at the first refusal.
package exchange
