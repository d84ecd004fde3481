package signin_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/invitebot/invitebot/internal/signin"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, signin.KeySize)
	_, _ = rand.Read(k)
	return k
}

func mustSealer(t *testing.T, cur, prev []byte) *signin.Sealer {
	t.Helper()
	s, err := signin.NewSealer(cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Ensure a sealed value opens for its owner only, and not once altered.
func TestSealOwnerAndTamper(t *testing.T) {
	s := mustSealer(t, newKey(t), nil)
	plain := []byte("refresh-token-value")
	sealed := s.Seal("U1", plain)
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed value contains the plain text")
	}
	got, stale, err := s.Open("U1", sealed)
	if err != nil || stale || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v, %v", got, stale, err)
	}
	if _, _, err := s.Open("U2", sealed); !errors.Is(err, signin.ErrSealed) {
		t.Errorf("Open as another owner: err = %v, want ErrSealed", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, _, err := s.Open("U1", bad); err == nil {
			t.Fatalf("Open with byte %d altered succeeded", i)
		}
	}
	if _, _, err := s.Open("U1", nil); !errors.Is(err, signin.ErrSealed) {
		t.Errorf("Open(nil): err = %v", err)
	}
}

// Ensure a rotation keeps old values readable (marked stale) and seals new
// ones under the new key, which the old key alone cannot open.
func TestSealRotation(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	before := mustSealer(t, oldKey, nil)
	sealedOld := before.Seal("U1", []byte("a"))

	during := mustSealer(t, newK, oldKey)
	got, stale, err := during.Open("U1", sealedOld)
	if err != nil || !stale || string(got) != "a" {
		t.Fatalf("Open(old) during rotation = %q, stale %v, %v; want a, stale", got, stale, err)
	}
	sealedNew := during.Seal("U1", got)
	if _, stale, err := during.Open("U1", sealedNew); err != nil || stale {
		t.Fatalf("Open(new) = stale %v, %v", stale, err)
	}
	if _, _, err := before.Open("U1", sealedNew); !errors.Is(err, signin.ErrSealed) {
		t.Errorf("old key opened a value sealed under the new one: %v", err)
	}
	after := mustSealer(t, newK, nil)
	if _, _, err := after.Open("U1", sealedOld); !errors.Is(err, signin.ErrSealed) {
		t.Errorf("value sealed under a retired key opened: %v", err)
	}
}

func TestNewSealerKeySize(t *testing.T) {
	if _, err := signin.NewSealer(make([]byte, 16), nil); err == nil {
		t.Error("16-byte key accepted")
	}
	if _, err := signin.NewSealer(newKey(t), make([]byte, 31)); err == nil {
		t.Error("31-byte previous key accepted")
	}
}
