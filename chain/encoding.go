package chain

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Limits on decoded structure. Byte sizes are enforced per type by Validate methods; these bound
// what the CBOR decoder itself will allocate before a Validate method can run.
// maxCBORArrayElements must admit the largest block the rules allow (MaxBlockTxsLimit
// transactions); a lower value would make valid blocks undecodable.
const (
	maxCBORArrayElements = MaxBlockTxsLimit
	maxCBORMapPairs      = 1 << 10
	maxCBORNesting       = 16
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Core deterministic encoding (RFC 8949 §4.2.1): shortest integers, definite lengths,
	// sorted map keys. Structs are encoded as arrays (`toarray`), so field order is the schema.
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("chain: cbor encoder options: %v", err))
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxArrayElements:  maxCBORArrayElements,
		MaxMapPairs:       maxCBORMapPairs,
		MaxNestedLevels:   maxCBORNesting,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("chain: cbor decoder options: %v", err))
	}
}

// Errors shared by every decoder in this package; callers test them with errors.Is.
var (
	ErrTooLarge       = errors.New("chain: encoded object too large")
	ErrNonCanonical   = errors.New("chain: non-canonical encoding")
	ErrUnknownVersion = errors.New("chain: unknown version")
)

// Encode returns the canonical encoding of v. It fails only for values this package cannot
// represent, which is a programmer error in callers.
func Encode(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("chain: encode %T: %v", v, err))
	}
	return b
}

// decodeCanonical decodes data into v and insists that data is exactly the canonical encoding of
// v: no trailing bytes (cbor.Unmarshal rejects them) and no alternative encodings of the same
// value, so that one value has one hash.
func decodeCanonical(what string, data []byte, limit int, v any) error {
	if len(data) > limit {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, what, len(data), limit)
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("chain: decode %s: %w", what, classify(err))
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("chain: re-encode %s: %w", what, err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("%w: %s", ErrNonCanonical, what)
	}
	return nil
}

// classify wraps the CBOR decoder's structural errors in this package's sentinels: exceeded
// element, pair or nesting limits are ErrTooLarge; trailing bytes, indefinite lengths and tags,
// which never occur in a canonical encoding, are ErrNonCanonical.
func classify(err error) error {
	var (
		arr    *cbor.MaxArrayElementsError
		pairs  *cbor.MaxMapPairsError
		nest   *cbor.MaxNestedLevelError
		indef  *cbor.IndefiniteLengthError
		extra  *cbor.ExtraneousDataError
		tagged *cbor.TagsMdError
	)
	switch {
	case errors.As(err, &arr), errors.As(err, &pairs), errors.As(err, &nest):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.As(err, &indef), errors.As(err, &extra), errors.As(err, &tagged):
		return fmt.Errorf("%w: %w", ErrNonCanonical, err)
	}
	return err
}

// DecodeCanonical decodes an arbitrary canonical CBOR value (used for transaction payloads and by
// packages that define their own versioned records). The caller validates the result.
func DecodeCanonical(what string, data []byte, limit int, v any) error {
	return decodeCanonical(what, data, limit, v)
}

// DecodeStored decodes a value this node encoded and stored itself (its state records), with the
// same strict decoder but without re-encoding it to prove canonical form: the bytes were produced
// by Encode and are covered by the state root, and the re-encode doubled the cost of every state
// read on the execution path.
func DecodeStored(what string, data []byte, limit int, v any) error {
	if len(data) > limit {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, what, len(data), limit)
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("chain: decode %s: %w", what, classify(err))
	}
	return nil
}

// DecodeFirst decodes the first CBOR data item of data into v, insisting on its canonical
// encoding, and returns the bytes after it: for judging a message from a prefix of it (a
// proposal's signed fields and header, before its transactions arrive). A prefix that ends
// inside the item yields an error wrapping io.ErrUnexpectedEOF.
func DecodeFirst(what string, data []byte, v any) (rest []byte, err error) {
	rest, err = decMode.UnmarshalFirst(data, v)
	if err != nil {
		return nil, fmt.Errorf("chain: decode %s: %w", what, classify(err))
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("chain: re-encode %s: %w", what, err)
	}
	if !bytes.Equal(again, data[:len(data)-len(rest)]) {
		return nil, fmt.Errorf("%w: %s", ErrNonCanonical, what)
	}
	return rest, nil
}

func checkVersion(what string, got, want uint8) error {
	if got != want {
		return fmt.Errorf("%w: %s version %d (this node understands %d)", ErrUnknownVersion, what, got, want)
	}
	return nil
}
