package state

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Reads of plans, memberships and payments for the node and the wallet. Every one is a bounded
// number of point reads: a provider's plans through plans/<provider> (at most
// MaxOpenPlansPerProvider), a patient's memberships at a provider through mships/ (at most
// MaxMembershipsPerPair).

// Plan returns the plan with id (retired or not), or nil, nil.
func Plan(view View, id chain.Hash) (*PlanRecord, error) {
	var r PlanRecord
	found, err := get(view, planKey(id), "plan", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// PlansOf returns provider's unretired plans in publication order, or nil, nil.
func PlansOf(view View, provider chain.Address) ([]*PlanRecord, error) {
	idx, err := readPlanIndex(view, provider)
	if err != nil {
		return nil, err
	}
	var out []*PlanRecord
	for _, id := range idx.IDs {
		p, err := Plan(view, id)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, fmt.Errorf("state: indexed plan %s missing (state corrupt?)", id.Short())
		}
		out = append(out, p)
	}
	return out, nil
}

// Membership returns the membership with id, or nil, nil.
func Membership(view View, id chain.Hash) (*MembershipRecord, error) {
	var r MembershipRecord
	found, err := get(view, mshipKey(id), "membership", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// MembershipsAt returns every membership at provider that ever counted patient among its
// members, in enrolment order (cancelled ones included: OpenAt and Statement say where each
// stands), or nil, nil.
func MembershipsAt(view View, provider, patient chain.Address) ([]*MembershipRecord, error) {
	idx, err := readMembershipIndex(view, provider, patient)
	if err != nil {
		return nil, err
	}
	if len(idx.IDs) > MaxMembershipsPerPair {
		return nil, fmt.Errorf("state: stored membership index has %d entries, limit %d", len(idx.IDs), MaxMembershipsPerPair)
	}
	var out []*MembershipRecord
	for _, id := range idx.IDs {
		m, err := Membership(view, id)
		if err != nil {
			return nil, err
		}
		if m == nil {
			return nil, fmt.Errorf("state: indexed membership %s missing (state corrupt?)", id.Short())
		}
		out = append(out, m)
	}
	return out, nil
}

// OpenMembershipAt returns patient's membership at provider that is open at block time atMs
// (there is at most one), or nil, nil.
func OpenMembershipAt(view View, provider, patient chain.Address, atMs int64) (*MembershipRecord, error) {
	ms, err := MembershipsAt(view, provider, patient)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.OpenAt(atMs) {
			return m, nil
		}
	}
	return nil, nil
}

// Payment returns the recorded payment or refund with id (its transaction's hash), or nil, nil.
func Payment(view View, id chain.Hash) (*PaymentState, error) {
	var r PaymentState
	found, err := get(view, paymentKey(id), "payment", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}
