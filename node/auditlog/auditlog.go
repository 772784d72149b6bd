// Package auditlog is a node's local audit log: one JSON line per API request (who, with which
// role, what, on which patient or record, and the answer's status), appended to a file of mode
// 0600 and rotated by size, so that it stays bounded. It is the practice's own record of its
// staff's actions; the ledger's access entries are the patient's.
package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Entry is one line of the log.
type Entry struct {
	Time time.Time `json:"time"`
	// User is the staff user's name, "operator" for the API token, or "" when the request
	// carried no valid credentials (then Note says why).
	User   string `json:"user"`
	Role   string `json:"role,omitempty"`
	Method string `json:"method"`
	// Path is the URL path only: the query is never logged.
	Path   string `json:"path"`
	Status int    `json:"status"`
	// Patient and Record are the ids the route names (path or body), when it names one.
	Patient   string `json:"patient,omitempty"`
	Record    string `json:"record,omitempty"`
	Emergency bool   `json:"emergency,omitempty"`
	Client    string `json:"client,omitempty"`
	// Note says more about a refusal or a login: "login failed", "login rate-limited", …
	Note string `json:"note,omitempty"`
}

// Defaults of Open's bounds: ten files of 10 MiB.
const (
	DefaultMaxBytes = 10 << 20
	DefaultKeep     = 10
	// maxPath bounds the path written per entry.
	maxPath = 512
)

// Log appends entries to one file and rotates it: when an entry would take the file past
// maxBytes, path becomes path.1 (path.1 becomes path.2, …) and entries beyond keep rotated
// files are deleted. Lines are written whole with one write(2) on a file opened O_APPEND: they
// survive a crash of the node, but are not fsynced one by one (a power loss may lose the last
// few).
type Log struct {
	path     string
	maxBytes int64
	keep     int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating, mode 0600) the log at path. maxBytes and keep of 0 take the defaults.
func Open(path string, maxBytes int64, keep int) (*Log, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	l := &Log{path: path, maxBytes: maxBytes, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("auditlog: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends e.
func (l *Log) Write(e Entry) error {
	if len(e.Path) > maxPath {
		e.Path = e.Path[:maxPath] + "…"
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("auditlog: closed")
	}
	if l.size > 0 && l.size+int64(len(line)) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	return nil
}

func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	l.f = nil
	if err := os.Remove(fmt.Sprintf("%s.%d", l.path, l.keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auditlog: %w", err)
	}
	for i := l.keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("auditlog: %w", err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	return l.open()
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Tail returns up to n of the most recent entries of the current file, oldest first.
func (l *Log) Tail(n int) ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ReadTail(l.path, n, l.maxBytes)
}

// ReadTail reads up to n of the last entries of the file at path, reading at most limit bytes.
func ReadTail(path string, n int, limit int64) ([]Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("auditlog: %w", err)
	}
	out := []Entry{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a torn last line after a power loss
		}
		out = append(out, e)
		if len(out) > n {
			out = out[1:]
		}
	}
	return out, sc.Err()
}
