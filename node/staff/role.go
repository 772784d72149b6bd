// Package staff is a practice's staff accounts on its node: named users with a role, kept in
// HOME/users.json with argon2id password hashes, and the sessions they open by logging in to
// the node's API. The role → permission matrix (Permissions) is the one place that says what
// each role may do; the API checks it on every route.
package staff

import (
	"fmt"
	"slices"
	"strings"
)

// Role is a staff member's role at the practice.
type Role string

// The roles. The operator (the holder of HOME/api.token) is not a user and has every
// permission; RoleOperator names it in the audit log.
const (
	// RoleClinician imports, lists and reads records, and opens emergency (break-glass) access.
	RoleClinician Role = "clinician"
	// RoleFrontDesk enrols patients, submits transactions patients signed and bills
	// memberships; it never sees record contents or metadata, consents or accesses.
	RoleFrontDesk Role = "front-desk"
	// RoleAdmin sees the node's status, the chain's blocks, the staff list and the local audit
	// log, and bills memberships; it touches no record.
	RoleAdmin Role = "admin"
	// RoleBilling files claims with payers and, on a payer's node, publishes schedules and
	// coverage and decides claims; it reads no clinical record through the record endpoints.
	RoleBilling Role = "billing"
	// RoleOperator is the operator token's role; no user has it.
	RoleOperator Role = "operator"
)

// Roles are the roles a user may have, in the order documents list them.
var Roles = []Role{RoleClinician, RoleFrontDesk, RoleAdmin, RoleBilling}

// ParseRole parses a user role by name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if !slices.Contains(Roles, r) {
		return "", fmt.Errorf("staff: role %q: want one of %s", s, strings.Join(roleNames(), ", "))
	}
	return r, nil
}

func roleNames() []string {
	out := make([]string, len(Roles))
	for i, r := range Roles {
		out[i] = string(r)
	}
	return out
}

// Permission is one kind of action on the API; every route needs exactly one (docs/api.md).
type Permission string

// The permissions.
const (
	// PermStatus: GET /v1/status, GET /v1/blocks/{height}.
	PermStatus Permission = "status"
	// PermAccounts: GET /v1/accounts/{address} (a patient's nonce and registration).
	PermAccounts Permission = "accounts"
	// PermSubmit: POST /v1/txs, POST /v1/txs/batch (transactions patients signed).
	PermSubmit Permission = "submit"
	// PermEnrol: POST /v1/enrolments (the practice co-signs a patient's registration).
	PermEnrol Permission = "enrol"
	// PermImport: POST /v1/patients/{patient}/records, POST /v1/records/{id}/amend, POST /fhir.
	PermImport Permission = "records.import"
	// PermList: GET /v1/patients/{patient}/records, …/consents, …/accesses (metadata).
	PermList Permission = "records.list"
	// PermRead: GET /v1/records/{id}, GET /v1/patients/{patient}/export, the FHIR face's reads (contents).
	PermRead Permission = "records.read"
	// PermEmergency: POST /v1/emergency, GET /v1/records/{id}?emergency=true (break-glass).
	PermEmergency Permission = "emergency"
	// PermCoSign: POST /v1/emergency/cosign (an authority reviews another practice's
	// break-glass). Operator only.
	PermCoSign Permission = "emergency.cosign"
	// PermClaims: the claim endpoints, /v1/claims… and /v1/payer/… (node/claims_api.go).
	PermClaims Permission = "claims"
	// PermBilling: everything under /v1/billing (plans, membership agreements, enrolments,
	// statements, payments): the practice's money, not its records. Clinicians do not bill.
	PermBilling Permission = "billing"
	// PermAudit: GET /v1/audit (this node's local audit log), GET /v1/users (the staff list).
	PermAudit Permission = "audit"
)

// Permissions is the role → permission matrix, the only place it is written in code. The
// operator has every permission (Can).
var Permissions = map[Role][]Permission{
	RoleClinician: {PermStatus, PermAccounts, PermImport, PermList, PermRead, PermEmergency},
	RoleFrontDesk: {PermStatus, PermAccounts, PermSubmit, PermEnrol, PermBilling},
	RoleAdmin:     {PermStatus, PermAudit, PermClaims, PermBilling},
	RoleBilling:   {PermStatus, PermClaims, PermBilling},
}

// Can says whether role r has permission p.
func (r Role) Can(p Permission) bool {
	if r == RoleOperator {
		return true
	}
	return slices.Contains(Permissions[r], p)
}
