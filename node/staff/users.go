package staff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// User is one staff member's account.
type User struct {
	// Name identifies the person (HIPAA §164.312(a)(2)(i), unique user identification): unique
	// on this node, matching NamePattern.
	Name string `json:"name"`
	Role Role   `json:"role"`
	// PasswordHash is an argon2id PHC string (HashPassword).
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
	// Disabled users cannot log in, and their sessions end at their next request.
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// NamePattern is what a user name looks like: 2 to 32 characters, lowercase letters, digits,
// '.', '_' and '-', starting with a letter.
var NamePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{1,31}$`)

// CheckName checks a user name against NamePattern.
func CheckName(name string) error {
	if !NamePattern.MatchString(name) {
		return fmt.Errorf("staff: user name %q: want 2 to 32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter", name)
	}
	return nil
}

// Limits of users.json.
const (
	MaxUsers     = 1000
	maxFileBytes = 4 << 20
	fileVersion  = 1
)

// usersFile is the layout of users.json.
type usersFile struct {
	Version int    `json:"version"`
	Users   []User `json:"users"`
}

// ErrUnknownUser is returned for a name users.json does not hold.
var ErrUnknownUser = errors.New("staff: no such user")

// Load reads the users in path; a missing file holds none.
func Load(path string) ([]User, error) {
	users, _, err := load(path)
	return users, err
}

func load(path string) ([]User, os.FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("staff: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("staff: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("staff: read %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, nil, fmt.Errorf("staff: %s is larger than %d bytes", path, maxFileBytes)
	}
	var uf usersFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&uf); err != nil {
		return nil, nil, fmt.Errorf("staff: %s: %w", path, err)
	}
	if uf.Version != fileVersion {
		return nil, nil, fmt.Errorf("staff: %s: version %d, want %d", path, uf.Version, fileVersion)
	}
	if err := check(uf.Users); err != nil {
		return nil, nil, fmt.Errorf("staff: %s: %w", path, err)
	}
	return uf.Users, fi, nil
}

// check validates a user list: names, roles, uniqueness, hashes, size.
func check(users []User) error {
	if len(users) > MaxUsers {
		return fmt.Errorf("%d users, limit %d", len(users), MaxUsers)
	}
	seen := make(map[string]bool, len(users))
	for _, u := range users {
		if err := CheckName(u.Name); err != nil {
			return err
		}
		if seen[u.Name] {
			return fmt.Errorf("user %q appears twice", u.Name)
		}
		seen[u.Name] = true
		if _, err := ParseRole(string(u.Role)); err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		if _, _, _, err := parseHash(u.PasswordHash); err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
	}
	return nil
}

// Save writes users to path atomically: a temporary file in the same directory (mode 0600),
// fsynced, renamed over path, and the directory fsynced. A reader sees the old list or the new
// one, never a mix, even across a power loss.
func Save(path string, users []User) error {
	if err := check(users); err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	if users == nil {
		users = []User{}
	}
	data, err := json.MarshalIndent(usersFile{Version: fileVersion, Users: users}, "", "  ")
	if err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".users-*.tmp")
	if err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("staff: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("staff: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("staff: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("staff: sync %s: %w", dir, err)
	}
	return nil
}

// Update applies f to the users in path and saves the result, holding an exclusive lock on
// path+".lock" so that two commands editing users.json at once do not lose either's change.
func Update(path string, f func([]User) ([]User, error)) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("staff: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("staff: lock %s: %w", lock.Name(), err)
	}
	defer func() { _ = unix.Flock(int(lock.Fd()), unix.LOCK_UN) }()
	users, err := Load(path)
	if err != nil {
		return err
	}
	users, err = f(slices.Clone(users))
	if err != nil {
		return err
	}
	return Save(path, users)
}

// Add adds a user with a hash of password to path.
func Add(path, name string, role Role, password string, params HashParams, rand io.Reader, now time.Time) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	hash, err := HashPassword(password, params, rand)
	if err != nil {
		return err
	}
	return Update(path, func(users []User) ([]User, error) {
		if slices.ContainsFunc(users, func(u User) bool { return u.Name == name }) {
			return nil, fmt.Errorf("staff: user %q exists", name)
		}
		return append(users, User{Name: name, Role: role, PasswordHash: hash, Created: now.UTC()}), nil
	})
}

// Disable marks a user disabled; it is not an error to disable a disabled user.
func Disable(path, name string, now time.Time) error {
	return Update(path, func(users []User) ([]User, error) {
		i := slices.IndexFunc(users, func(u User) bool { return u.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w %q", ErrUnknownUser, name)
		}
		if !users[i].Disabled {
			t := now.UTC()
			users[i].Disabled, users[i].DisabledAt = true, &t
		}
		return users, nil
	})
}

// Directory is the running node's view of users.json: Lookup reloads the file whenever it has
// changed (another inode, size or modification time: Save always renames a new file into
// place), so a user added or disabled by `medledger users` counts at the next request.
type Directory struct {
	path string

	mu    sync.Mutex
	fi    os.FileInfo // nil: no file was read (absent)
	users map[string]User
}

// NewDirectory reads path (a missing file is an empty directory).
func NewDirectory(path string) (*Directory, error) {
	d := &Directory{path: path}
	if err := d.reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Lookup returns the user called name as users.json holds it now. A file that fails to load
// after a change is an error (the API answers 500 and the node logs it), not an empty list.
func (d *Directory) Lookup(name string) (User, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.refresh(); err != nil {
		return User{}, false, err
	}
	u, ok := d.users[name]
	return u, ok, nil
}

// List returns every user, sorted by name.
func (d *Directory) List() ([]User, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.refresh(); err != nil {
		return nil, err
	}
	out := make([]User, 0, len(d.users))
	for _, u := range d.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return cmpString(a.Name, b.Name) })
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (d *Directory) refresh() error {
	fi, err := os.Stat(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if d.fi != nil {
			d.fi, d.users = nil, map[string]User{}
		}
		return nil
	case err != nil:
		return fmt.Errorf("staff: %w", err)
	}
	if d.fi != nil && os.SameFile(fi, d.fi) && fi.Size() == d.fi.Size() && fi.ModTime().Equal(d.fi.ModTime()) {
		return nil
	}
	return d.reload()
}

func (d *Directory) reload() error {
	users, fi, err := load(d.path)
	if err != nil {
		return err
	}
	m := make(map[string]User, len(users))
	for _, u := range users {
		m[u.Name] = u
	}
	d.fi, d.users = fi, m
	return nil
}
