//go:build mutants

package consensus

// mutant is set with -ldflags -X by the mutation test; see mutant.go.
var mutant string
