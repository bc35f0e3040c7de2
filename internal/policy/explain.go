package policy

import (
	"fmt"

	"github.com/crewgate/crewgate/internal/identity"
)

// Explanation is the outcome of evaluating every rule for one request.
type Explanation struct {
	Rules    []RuleResult // one per rule, in order
	Decision Decision     // what Decide returns for the same request
	Decided  int          // index in Rules of the deciding rule, -1 when none matched
}

// RuleResult says whether one rule matched a request and, if not, why not.
type RuleResult struct {
	Name    string
	Action  string
	Reason  string
	Matched bool
	// Held lists the conditions that held, in evaluation order ("methods",
	// "hosts", "path", "headers.X-Env", "groups", "not_groups",
	// "claims.email", "body"); for a rule that matched, all of them.
	Held []string
	// Condition is the first condition that failed, "" when the rule matched.
	Condition string
	// Why says how Condition failed, e.g. "DELETE not in [GET POST]".
	Why string
}

// Failure is "condition: why", e.g. "methods: DELETE not in [GET POST]", or
// "" when the rule matched.
func (r RuleResult) Failure() string {
	if r.Matched {
		return ""
	}
	return r.Condition + ": " + r.Why
}

func (r *RuleResult) fail(cond, format string, args ...any) {
	r.Condition, r.Why = cond, fmt.Sprintf(format, args...)
}

// held is nil-safe so that eval can call it unguarded with a constant.
func (r *RuleResult) held(cond string) {
	if r != nil {
		r.Held = append(r.Held, cond)
	}
}

// Explain evaluates every rule in order, for `policy explain`: per rule
// whether it matched and, if not, the first condition that failed and why,
// and the final decision, which is always the one Decide makes.
func (p *Policy) Explain(r *Request, id *identity.Identity) Explanation {
	ex := Explanation{Decision: Decision{Action: Allow}, Decided: -1}
	if p == nil {
		return ex
	}
	in := prepare(r)
	ex.Rules = make([]RuleResult, len(p.rules))
	for i := range p.rules {
		ru := &p.rules[i]
		res := &ex.Rules[i]
		res.Name, res.Action, res.Reason = ru.name, ru.action, ru.reason
		res.Matched = ru.eval(&in, id, res)
		if res.Matched && ex.Decided < 0 {
			ex.Decided, ex.Decision = i, ru.decision()
		}
	}
	return ex
}
