package ssh

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyStore persists the host keys pinned in trust-on-first-use mode. Keys are
// in authorized_keys format ("ssh-ed25519 AAAA…").
type KeyStore interface {
	// Get returns the key pinned for host, or ErrKeyNotFound.
	Get(ctx context.Context, host string) ([]byte, error)
	// Put pins key for host unless a key is already pinned, in which case
	// it returns ErrKeyExists and changes nothing.
	Put(ctx context.Context, host string, key []byte) error
}

// KeyStore errors.
var (
	ErrKeyNotFound = errors.New("no host key pinned")
	ErrKeyExists   = errors.New("a host key is already pinned")
)

// FileKeyStore pins keys in a file, one "host key-type base64" line per host
// (the known_hosts layout, so an operator can promote it to a known_hosts
// file). An advisory lock makes Put safe across processes on one machine.
type FileKeyStore struct {
	Path string
	mu   sync.Mutex
}

var _ KeyStore = (*FileKeyStore)(nil)

// Get returns the key pinned for host.
func (s *FileKeyStore) Get(_ context.Context, host string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return nil, fmt.Errorf("lock %s: %w", s.Path, err)
	}
	return lookup(f, host)
}

// Put pins key for host unless one is pinned already.
func (s *FileKeyStore) Put(_ context.Context, host string, key []byte) error {
	if strings.ContainsAny(host, " \t\r\n") {
		return fmt.Errorf("host %q contains white space", host)
	}
	key = bytes.TrimSpace(key)
	if bytes.ContainsAny(key, "\r\n") {
		return errors.New("key spans several lines")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", s.Path, err)
	}
	if _, err := lookup(f, host); err == nil {
		return ErrKeyExists
	} else if !errors.Is(err, ErrKeyNotFound) {
		return err
	}
	line := host + " " + string(key) + "\n"
	if _, err := f.Seek(0, 2); err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		return err
	}
	return f.Sync()
}

func lookup(f *os.File, host string) ([]byte, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		h, key, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok && h == host {
			return []byte(key), nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, ErrKeyNotFound
}

// KVBucket is the JetStream key-value bucket KVKeyStore expects.
const KVBucket = "quiesce_hostkeys"

// KVKeyStore pins keys in a JetStream key-value bucket, so every worker of a
// fleet trusts the same first key. Create is the compare-and-set: of two
// workers meeting a new host at once, one pins and the other reads its pin.
type KVKeyStore struct {
	KV jetstream.KeyValue
}

var _ KeyStore = (*KVKeyStore)(nil)

// OpenKVKeyStore creates (or opens) the bucket KVBucket.
func OpenKVKeyStore(ctx context.Context, js jetstream.JetStream, replicas int) (*KVKeyStore, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      KVBucket,
		Description: "SSH host keys pinned on first use",
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("host key bucket: %w", err)
	}
	return &KVKeyStore{KV: kv}, nil
}

// kvKey maps a host ("[10.0.0.1]:2222") to a valid KV key.
func kvKey(host string) string { return "h." + base64.RawURLEncoding.EncodeToString([]byte(host)) }

// Get returns the key pinned for host.
func (s *KVKeyStore) Get(ctx context.Context, host string) ([]byte, error) {
	e, err := s.KV.Get(ctx, kvKey(host))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// Put pins key for host unless one is pinned already.
func (s *KVKeyStore) Put(ctx context.Context, host string, key []byte) error {
	_, err := s.KV.Create(ctx, kvKey(host), bytes.TrimSpace(key))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return ErrKeyExists
	}
	return err
}
