package signin

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the size of a token key: AES-256.
const KeySize = 32

// sealVersion is the first byte of every sealed value.
const sealVersion = 1

// keyIDSize is how many bytes of the key's SHA-256 name the key in a
// sealed value (a name, not a secret: it only picks the key to try).
const keyIDSize = 4

// ErrSealed is returned when a sealed value cannot be opened: it was sealed
// under a key that is not configured, for another owner, or it was altered.
var ErrSealed = errors.New("sealed token cannot be opened (unknown key, another owner's, or altered)")

// Sealer encrypts values at rest with AES-256-GCM. Each sealed value
// carries the ID of the key that sealed it, so during a rotation values
// sealed under the previous key still open while new ones are sealed under
// the current key. The owner is the additional authenticated data: one
// person's value does not open as another's.
type Sealer struct {
	cur  key
	prev *key
}

type key struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

func newKey(raw []byte) (key, error) {
	if len(raw) != KeySize {
		return key{}, fmt.Errorf("token key: %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, fmt.Errorf("token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, fmt.Errorf("token key: %w", err)
	}
	sum := sha256.Sum256(raw)
	var k key
	copy(k.id[:], sum[:keyIDSize])
	k.aead = aead
	return k, nil
}

// NewSealer returns a Sealer that seals under current and opens values
// sealed under current or previous (nil: no rotation in progress).
func NewSealer(current, previous []byte) (*Sealer, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, err
	}
	s := &Sealer{cur: cur}
	if previous != nil {
		p, err := newKey(previous)
		if err != nil {
			return nil, fmt.Errorf("previous %w", err)
		}
		if p.id != cur.id {
			s.prev = &p
		}
	}
	return s, nil
}

func aad(owner string) []byte { return []byte("invitebot-token-v1\x00" + owner) }

// Seal encrypts plain for owner under the current key.
func (s *Sealer) Seal(owner string, plain []byte) []byte {
	nonce := make([]byte, s.cur.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := make([]byte, 0, 1+keyIDSize+len(nonce)+len(plain)+s.cur.aead.Overhead())
	out = append(out, sealVersion)
	out = append(out, s.cur.id[:]...)
	out = append(out, nonce...)
	return s.cur.aead.Seal(out, nonce, plain, aad(owner))
}

// Open decrypts a value Seal produced for owner. stale reports that it was
// sealed under the previous key: the caller seals it again under the
// current one.
func (s *Sealer) Open(owner string, sealed []byte) (plain []byte, stale bool, err error) {
	if len(sealed) < 1+keyIDSize || sealed[0] != sealVersion {
		return nil, false, ErrSealed
	}
	var id [keyIDSize]byte
	copy(id[:], sealed[1:1+keyIDSize])
	k := &s.cur
	switch {
	case id == s.cur.id:
	case s.prev != nil && id == s.prev.id:
		k, stale = s.prev, true
	default:
		return nil, false, ErrSealed
	}
	rest := sealed[1+keyIDSize:]
	n := k.aead.NonceSize()
	if len(rest) < n {
		return nil, false, ErrSealed
	}
	plain, err = k.aead.Open(nil, rest[:n], rest[n:], aad(owner))
	if err != nil {
		return nil, false, ErrSealed
	}
	return plain, stale, nil
}

// KeyID names a key the way sealed values do (hex of the first bytes of
// its SHA-256), so an admin can tell which key is in use without it.
func KeyID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return fmt.Sprintf("%x", sum[:keyIDSize])
}
