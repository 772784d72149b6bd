package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/node/staff"
)

// usageError is a command used wrongly (a missing or bad flag or argument): main exits 2 for
// it, 1 for every other failure.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode is the process's exit status for err.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// usageChecked makes cmd's flag and argument errors usage errors.
func usageChecked(cmd *cobra.Command, args cobra.PositionalArgs) *cobra.Command {
	cmd.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			return usageError{err}
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return cmd
}

// staffHome checks --home names an existing directory.
func staffHome(home string) (node.Home, error) {
	if home == "" {
		return "", usagef("--home is required")
	}
	if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
		return "", usagef("--home %s: not a directory", home)
	}
	return node.Home(home), nil
}

func usersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage the practice's staff accounts in HOME/users.json (a running node sees changes at once)",
	}
	cmd.AddCommand(usersAddCmd(), usersListCmd(), usersDisableCmd())
	return cmd
}

// generatedPasswordBytes is the entropy of a generated initial password (144 bits, 24 characters).
const generatedPasswordBytes = 18

func usersAddCmd() *cobra.Command {
	var home, name, role, passwordFile string
	cmd := &cobra.Command{
		Use:   "add --home HOME --name NAME --role ROLE [--password-file FILE]",
		Short: "Add a staff user (role clinician, front-desk or admin); prints a generated password once unless --password-file is given",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := staffHome(home)
			if err != nil {
				return err
			}
			if err := staff.CheckName(name); err != nil {
				return usageError{err}
			}
			r, err := staff.ParseRole(role)
			if err != nil {
				return usageError{err}
			}
			password, generated := "", passwordFile == ""
			if generated {
				raw := make([]byte, generatedPasswordBytes)
				if _, err := io.ReadFull(rand.Reader, raw); err != nil {
					return err
				}
				password = base64.RawURLEncoding.EncodeToString(raw)
			} else if password, err = readPasswordFile(passwordFile, true); err != nil {
				return err
			}
			if err := staff.Add(h.UsersFile(), name, r, password, staff.DefaultHashParams, rand.Reader, time.Now()); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "added %s (%s) to %s\n", name, r, h.UsersFile())
			if generated {
				fmt.Fprintf(out, "initial password (shown once): %s\n", password)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&name, "name", "", "the user's name: 2-32 characters of a-z, 0-9, '.', '_', '-'")
	cmd.Flags().StringVar(&role, "role", "", "clinician, front-desk or admin")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "read the password from the first line of this file instead of generating one")
	return usageChecked(cmd, cobra.NoArgs)
}

// readPasswordFile reads a password from the first line of path ("-": standard input). A new
// password (check) must satisfy staff.CheckPassword.
func readPasswordFile(path string, check bool) (string, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(io.LimitReader(r, staff.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	password := strings.TrimRight(line, "\r\n")
	if !check {
		return password, nil
	}
	if err := staff.CheckPassword(password); err != nil {
		return "", usageError{err}
	}
	return password, nil
}

func usersListCmd() *cobra.Command {
	var home string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --home HOME [--json]",
		Short: "List the staff users (never their password hashes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := staffHome(home)
			if err != nil {
				return err
			}
			users, err := staff.Load(h.UsersFile())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				list := make([]node.UserJSON, len(users))
				for i, u := range users {
					list[i] = node.UserJSON{Name: u.Name, Role: string(u.Role), Created: u.Created, Disabled: u.Disabled, DisabledAt: u.DisabledAt}
				}
				data, err := json.MarshalIndent(map[string]any{"users": list}, "", "  ")
				if err != nil {
					return err
				}
				_, err = out.Write(append(data, '\n'))
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tSTATUS")
			for _, u := range users {
				status := "active"
				if u.Disabled {
					status = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Created.Format(time.RFC3339), status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return usageChecked(cmd, cobra.NoArgs)
}

func usersDisableCmd() *cobra.Command {
	var home, name string
	cmd := &cobra.Command{
		Use:   "disable --home HOME --name NAME",
		Short: "Disable a staff user: no more logins, and its open sessions end at their next request",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := staffHome(home)
			if err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required")
			}
			if err := staff.Disable(h.UsersFile(), name, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled %s\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&name, "name", "", "the user to disable")
	return usageChecked(cmd, cobra.NoArgs)
}

func loginCmd() *cobra.Command {
	var home, name, passwordFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "login --home HOME --name NAME [--password-file FILE|-]",
		Short: "Log a staff user in to a running node and print the session token (the password is read from the first line of standard input unless --password-file is given)",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := staffHome(home)
			if err != nil {
				return err
			}
			if name == "" {
				return usagef("--name is required")
			}
			if passwordFile == "" {
				passwordFile = "-"
			}
			password, err := readPasswordFile(passwordFile, false)
			if err != nil {
				return err
			}
			l, raw, err := login(cmd.Context(), h, name, password)
			if err != nil {
				return err
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), l.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "logged in as %s (%s) until %s at the latest; %d idle seconds end the session\n", l.User, l.Role, l.ExpiresAt, l.IdleTimeoutSeconds)
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory (its API address is read from it)")
	cmd.Flags().StringVar(&name, "name", "", "the user's name")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "read the password from the first line of this file (\"-\": standard input, the default)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the whole answer as JSON")
	return usageChecked(cmd, cobra.NoArgs)
}

// login posts to the node's POST /v1/login (which needs no token).
func login(ctx context.Context, h node.Home, name, password string) (node.LoginJSON, []byte, error) {
	var l node.LoginJSON
	cfg, err := node.LoadConfig(string(h))
	if err != nil {
		return l, nil, err
	}
	body, err := json.Marshal(node.LoginRequest{Name: name, Password: password})
	if err != nil {
		return l, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.API.Listen+"/v1/login", bytes.NewReader(body))
	if err != nil {
		return l, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return l, nil, fmt.Errorf("node API at %s: %w (is the node running?)", cfg.API.Listen, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return l, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e node.ErrorJSON
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return l, nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return l, nil, fmt.Errorf("node API: HTTP %d", resp.StatusCode)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, nil, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return l, data, nil
}
