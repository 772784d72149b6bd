// Package replica drives one ledger replica: it glues the pure consensus engine to the state
// machine, a store and a mempool. It is single-threaded and does no networking or timing of its
// own: the caller (the deterministic simulation, or the libp2p node) delivers messages, fires the
// timeouts it is asked to schedule, and sends the messages it is handed. It persists before it
// returns anything to send, so a caller that sends only what it is handed never makes the
// authority equivocate.
package replica
