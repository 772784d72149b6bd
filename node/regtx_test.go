package node

import (
	"crypto/sha256"
	"testing"

	"github.com/medledger/medledger/chain"
)

// Patients register only with an enrolling provider's co-signature, so tests that need "a valid
// transaction by a fresh key" on an empty ledger register a provider instead, licensed by the
// test licensing authority their genesis names.

func testLicensing(t *testing.T) chain.PrivKey { return testKey(t, "node-test/licensing") }

func testLicensingAuthorities(t *testing.T) []chain.Authority {
	return []chain.Authority{{Key: testLicensing(t).Public(), Name: "test board"}}
}

// regTx registers k as a provider (nonce 1 on a fresh key), with encryption key enc.
func regTx(t *testing.T, k chain.PrivKey, chainID string, enc []byte) *chain.Tx {
	nodeKey := chain.PubKey(sha256.Sum256(append([]byte("node/"), k.Public().String()...)))
	l := chain.Licence{Role: chain.RoleProvider, Subject: k.Public(), NodeKey: nodeKey, Number: "T-1", NotAfter: 1 << 50}
	l.Sign(testLicensing(t), chainID)
	return chain.NewTx(k, chainID, chain.TxRegisterMember, 1, &chain.RegisterMember{Licence: l, EncryptionKey: enc})
}
