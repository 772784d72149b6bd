package state

import (
	"testing"

	"github.com/medledger/medledger/testnet/purecheck"
)

func TestPure(t *testing.T) { purecheck.Check(t, ".") }
