// Package statetree is MedLedger's authenticated state: a versioned IAVL+ tree whose root hash goes
// into block headers and whose ICS-23 proofs let a light client (a patient's wallet) check one key
// of the state against a header it trusts, without replaying the chain.
//
// Why IAVL: it is maintained by Cosmos and runs under many production chains; it is versioned, so
// the tree can prove a key against any height that has not been pruned (a patient can ask "was
// this consent in force at block H?"); its proofs are the standard ICS-23 format, verified here by
// the separate github.com/cosmos/ics23/go library; and it sits on any ordered key-value store
// through its small DB interface, so the same tree runs on Badger in a node and on memory in tests.
//
// Versions are heights: the first Commit (the genesis state) is version 0 and each block's commit
// is the next version. IAVL itself numbers versions from 1, so the tree stores version v as IAVL
// version v+1; the offset is invisible to proofs, which commit to roots, not version numbers.
//
// The tree takes no ownership of its DB and starts no goroutines (IAVL's asynchronous pruning is
// off). It prunes only when told to (Prune, synchronously); until then every committed version
// stays provable.
package statetree
