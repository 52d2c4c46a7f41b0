package clusterkey

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

func TestDeriveIsArgon2idOfSecretAndCluster(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	start := time.Now()
	k := Derive(secret, "prod")
	t.Logf("argon2id t=%d m=%d KiB p=%d took %v", Passes, MemoryKiB, Lanes, time.Since(start))
	want := argon2.IDKey(secret, []byte("baton cluster key v1\x00prod"), 2, 32*1024, 4, 32)
	if !bytes.Equal(k, want) {
		t.Fatalf("Derive = %x, want argon2id(secret, salt, t=2, 32 MiB, p=4) = %x", k, want)
	}
	if bytes.Equal(k, secret) || len(k) != 32 {
		t.Fatalf("key %x", k)
	}
	if !bytes.Equal(Derive(secret, "prod"), k) {
		t.Error("Derive is not deterministic")
	}
	if bytes.Equal(Derive(secret, "staging"), k) {
		t.Error("two clusters with one secret share a key")
	}
	other := append([]byte{}, secret...)
	other[0] ^= 1
	if bytes.Equal(Derive(other, "prod"), k) {
		t.Error("two secrets share a key")
	}
}
