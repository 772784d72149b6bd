package envelope_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/medledger/medledger/wallet/envelope"
)

// Records sealed in one batch open for each recipient like singly sealed ones; each recipient's
// batch key is wrapped once (the HPKE part repeats across the batch's envelopes for that
// recipient), and an envelope still opens only its own record, for its own recipient.
func TestBatchSeal(t *testing.T) {
	keys := testKeys(t, 3, 700)
	stranger := testKey(t, 799)
	b := envelope.NewBatch(testRand(5), "medledger-test")
	var sealed []*envelope.Sealed
	var ctxs []envelope.Context
	for i := range 4 {
		ctx := testContext(fmt.Sprintf("batch record %d", i), 1)
		// Not every record goes to every recipient: record 3 leaves out keys[2].
		to := keys
		if i == 3 {
			to = keys[:2]
		}
		s, err := b.Seal(testBody(100+i), ctx, recipients(to...))
		if err != nil {
			t.Fatal(err)
		}
		sealed, ctxs = append(sealed, s), append(ctxs, ctx)
	}
	b.Close()
	for i, s := range sealed {
		for j, k := range keys {
			got, err := envelope.Open(k, s, ctxs[i])
			if i == 3 && j == 2 {
				if !errors.Is(err, envelope.ErrNoEnvelope) {
					t.Fatalf("record 3 opened for a recipient it was not sealed to: %v", err)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, testBody(100+i)) {
				t.Fatalf("record %d, key %d: %v", i, j, err)
			}
		}
		if _, err := envelope.Open(stranger, s, ctxs[i]); !errors.Is(err, envelope.ErrNoEnvelope) {
			t.Fatalf("stranger: %v", err)
		}
		for _, e := range s.Envelopes {
			if e.Version != envelope.EnvelopeVersionBatch {
				t.Fatalf("envelope version %d", e.Version)
			}
			if _, err := envelope.DecodeEnvelope(e.Encode()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The batch key's HPKE wrapping is shared; the data key's wrapping is not.
	e0, _ := sealed[0].Envelope(keys[0].Public().KeyID())
	e1, _ := sealed[1].Envelope(keys[0].Public().KeyID())
	n := len(e0.Wrapped) - 72
	if !bytes.Equal(e0.Wrapped[:n], e1.Wrapped[:n]) || bytes.Equal(e0.Wrapped[n:], e1.Wrapped[n:]) {
		t.Fatal("batch envelopes should share the batch key's wrapping and nothing else")
	}
	// An envelope moved to another record of the same batch (same recipient, same batch key)
	// does not open it.
	moved := clone(sealed[1])
	for i := range moved.Envelopes {
		if moved.Envelopes[i].RecipientKeyID == e0.RecipientKeyID {
			moved.Envelopes[i] = e0
		}
	}
	if _, err := envelope.Open(keys[0], moved, ctxs[1]); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("an envelope of another record opened: %v", err)
	}
	// Nor does a record under another record's Context, nor a tampered data-key wrapping.
	if _, err := envelope.Open(keys[0], sealed[0], ctxs[1]); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("wrong context: %v", err)
	}
	bad := clone(sealed[0])
	bad.Envelopes[0].Wrapped[len(bad.Envelopes[0].Wrapped)-1] ^= 1
	if _, err := envelope.Open(keys[0], bad, ctxs[0]); err == nil {
		t.Fatal("a tampered batch envelope opened")
	}
	// A recipient can wrap a batch-sealed record for a new grantee (a single envelope).
	grantee := testKey(t, 798)
	e, err := envelope.WrapFor(keys[1], sealed[2], ctxs[2], grantee.Public())
	if err != nil {
		t.Fatal(err)
	}
	withNew := clone(sealed[2])
	if err := withNew.AddEnvelope(e); err != nil {
		t.Fatal(err)
	}
	if got, err := envelope.Open(grantee, withNew, ctxs[2]); err != nil || !bytes.Equal(got, testBody(102)) {
		t.Fatalf("grantee: %v", err)
	}
	// A closed batch seals nothing, and a batch seals only its own chain's records.
	if _, err := b.Seal([]byte("x"), testContext("late", 1), recipients(keys[0])); err == nil {
		t.Fatal("a closed batch sealed")
	}
	other := testContext("other chain", 1)
	other.ChainID = "another-chain"
	if _, err := envelope.NewBatch(nil, "medledger-test").Seal([]byte("x"), other, recipients(keys[0])); err == nil {
		t.Fatal("a batch sealed a record of another chain")
	}
}

// Every byte of a batch envelope's wrapping is authenticated.
func TestBatchTamperEnvelope(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	s, err := envelope.NewBatch(testRand(3), ctx.ChainID).Seal([]byte("secret"), ctx, recipients(k))
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Envelopes[0].Wrapped {
		c := clone(s)
		c.Envelopes[0].Wrapped[i] ^= 0x01
		if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("wrapped byte %d: %v, want ErrDecrypt", i, err)
		}
	}
	c := clone(s)
	c.Envelopes[0].Version = envelope.EnvelopeVersion
	if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrMalformed) {
		t.Fatalf("a batch envelope called a single one: %v", err)
	}
}

// Batch.WrapFor wraps several records' data keys for a new recipient in a batch; the
// grantee opens exactly the records wrapped for it.
func TestBatchWrapFor(t *testing.T) {
	keys := testKeys(t, 2, 720)
	author, grantee := keys[0], keys[1]
	imp := envelope.NewBatch(nil, "medledger-test")
	var sealed []*envelope.Sealed
	var ctxs []envelope.Context
	for i := range 3 {
		ctx := testContext(fmt.Sprintf("wrapped later %d", i), 1)
		s, err := imp.Seal(testBody(200+i), ctx, recipients(author))
		if err != nil {
			t.Fatal(err)
		}
		sealed, ctxs = append(sealed, s), append(ctxs, ctx)
	}
	imp.Close()
	grant := envelope.NewBatch(nil, "medledger-test")
	for i := range 2 { // the third record is not covered
		e, err := grant.WrapFor(author, sealed[i], ctxs[i], grantee.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := sealed[i].AddEnvelope(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := grant.WrapFor(grantee, sealed[2], ctxs[2], author.Public()); !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("wrapped with a key that has no envelope: %v", err)
	}
	grant.Close()
	for i, s := range sealed {
		got, err := envelope.Open(grantee, s, ctxs[i])
		if i == 2 {
			if !errors.Is(err, envelope.ErrNoEnvelope) {
				t.Fatalf("record not wrapped for the grantee: %v", err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, testBody(200+i)) {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}
