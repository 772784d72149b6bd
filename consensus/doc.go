// Package consensus is MedLedger's BFT proof-of-authority core: a Tendermint-family engine
// (propose, prevote, precommit, locking; Algorithm 1 of "The latest gossip on BFT consensus") written
// as a pure state machine.
//
// The Engine starts no goroutines, reads no clock, does no I/O and uses no randomness. Inputs arrive
// through method calls (proposals, votes, timeouts, the current time as Unix milliseconds) and every
// effect leaves through Ready: what to persist, what to broadcast, which timeouts to arm, when a
// block is needed and when a block is final. A driver (the replica) owns the network, the disk and
// the clock, which is what lets a whole network be simulated deterministically in one test.
package consensus
