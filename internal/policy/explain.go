package policy

import (
	"fmt"

	"github.com/crewgate/crewgate/internal/identity"
)

// Explanation is the outcome of evaluating every rule for one request.
type Explanation struct {
	Rules    []RuleResult // one per rule, in order
	Decision Decision     // what Decide returns for the same request
	// Decided is the index in Rules of the deciding rule, or of the rule
	// that needs the body when Decision.NeedsBody; -1 when none matched.
	Decided int
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
	// NeedsBody says that every condition but the body held and the body
	// was not read (Condition is then "body").
	NeedsBody bool
	// Notes say how conditions held where that is not plain: "methods:
	// DELETE from X-HTTP-Method-Override", "body: matched a decoded JSON
	// string (value 3 of 8)".
	Notes []string
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

func (r *RuleResult) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// held is nil-safe so that eval can call it unguarded with a constant.
func (r *RuleResult) held(cond string) {
	if r != nil {
		r.Held = append(r.Held, cond)
	}
}

// Explain evaluates every rule in order, for `policy explain`: per rule
// whether it matched and, if not, the first condition that failed and why,
// and the final decision, which is always the one Decide makes (NeedsBody
// included: with a nil Body, rules that need it say so and do not match).
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
		o := ru.eval(&in, id, res)
		res.Matched = o == match
		if o != noMatch && ex.Decided < 0 {
			ex.Decided, ex.Decision = i, ru.decision(o)
		}
	}
	return ex
}
