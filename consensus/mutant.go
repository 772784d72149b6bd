//go:build !mutants

package consensus

// mutant names a deliberate defect that the mutation test (testnet/sim TestMutants, make
// mutants) compiles in with -tags mutants to show that the simulation catches it. In every
// other build it is the empty constant, and the checks on it compile away.
const mutant = ""
