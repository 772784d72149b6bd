package staff

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// HashParams are argon2id's cost parameters. A hash carries the parameters it was made with,
// so changing the defaults affects new passwords only.
type HashParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultHashParams are OWASP's minimum recommendation for argon2id (Password Storage Cheat
// Sheet: 19 MiB, 2 passes, 1 lane): about 30 ms on one core here, and small enough that the
// node's bound of concurrent hashings (MaxConcurrentHashes) keeps logins within 40 MiB.
var DefaultHashParams = HashParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// Limits on the parameters a stored hash may name, so that an edited users.json cannot make a
// login allocate without bound.
const (
	maxHashMemoryKiB = 256 * 1024
	maxHashTime      = 16
	maxHashThreads   = 16
	saltLen          = 16
	keyLen           = 32
	// MinPasswordLen is the shortest password accepted (NIST SP 800-63B: at least 8).
	MinPasswordLen = 12
	// MaxPasswordLen bounds a password (and the work of hashing one).
	MaxPasswordLen = 256
)

// HashPassword hashes password with argon2id, a fresh 16-byte salt from rand and params, as a
// PHC string: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64).
func HashPassword(password string, params HashParams, rand io.Reader) (string, error) {
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("staff: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, params.Time, params.MemoryKiB, params.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, params.MemoryKiB, params.Time, params.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword checks a new password's length.
func CheckPassword(password string) error {
	if len(password) < MinPasswordLen || len(password) > MaxPasswordLen {
		return fmt.Errorf("staff: a password has %d to %d characters", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// VerifyPassword says whether password matches the PHC string hash; the comparison of the
// derived keys is constant-time. A malformed hash is an error.
func VerifyPassword(hash, password string) (bool, error) {
	params, salt, want, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordLen {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), salt, params.Time, params.MemoryKiB, params.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

var errBadHash = errors.New("staff: malformed password hash (want $argon2id$v=19$m=…,t=…,p=…$salt$hash)")

func parseHash(s string) (HashParams, []byte, []byte, error) {
	var p HashParams
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || n != 3 {
		return p, nil, nil, errBadHash
	}
	if p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxHashMemoryKiB || p.Time < 1 || p.Time > maxHashTime || p.Threads < 1 || p.Threads > maxHashThreads {
		return p, nil, nil, fmt.Errorf("staff: password hash parameters m=%d,t=%d,p=%d out of bounds", p.MemoryKiB, p.Time, p.Threads)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, nil, nil, errBadHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
