// Package state is MedLedger's deterministic state machine: given a read-only view of committed
// state, a block header and its transactions, it returns the change set to commit and a result per
// transaction. It has no clock, no randomness, no goroutines and no I/O (a test enforces this);
// time arrives as the header's block time.
//
// A Machine (New) writes the initial state from genesis (Machine.Genesis), executes blocks
// (Machine.ApplyBlock, all-or-nothing), checks single transactions for the mempool
// (Machine.CheckTx) and packs blocks for proposers (Machine.NewBuilder). Package functions
// (Authorities, Nonce, Provider, Patient, ...) read committed state; Member answers a mempool's
// admission question (registered? authority? last nonce?) in one call. The key schema is in
// keys.go.
//
// Authority schedule: after block H, state holds the sets certifying H+1 and H+2. A change decided
// in block h (an authority proposal reaching more than two thirds of set(h), or evidence of
// equivocation) alters set(h+chain.AuthorityChangeDelay) only, so every header can name the next
// set before it signs anything. State also keeps a bounded history of the sets that certified
// recent heights (AuthoritySetAt), so evidence is judged against the set of the votes' height.
//
// Records that stop mattering leave state at a height fixed when they are written (authority
// proposals, evidence records): an expiry index keyed by height names them, and the block at that
// height deletes them, so no query or rule ever needs a scan.
package state
