package scheduler

import (
	"errors"
	"fmt"
	"strings"

	shoalpb "shoal/proto"
)

// ErrInvalidConstraint is wrapped by every error of ParseConstraint.
var ErrInvalidConstraint = errors.New("invalid constraint")

// ErrInvalidPreference is wrapped by every error of ValidateSpread.
var ErrInvalidPreference = errors.New("invalid placement preference")

// Node attributes that constraints and spread preferences can name.
const (
	keyID       = "node.id"
	keyHostname = "node.hostname"
	keyRole     = "node.role"
	keyOS       = "node.platform.os"
	keyArch     = "node.platform.arch"
	labelPrefix = "node.labels."
)

const knownKeys = "node.id, node.hostname, node.role, node.labels.<name>, node.platform.os or node.platform.arch"

// Constraint is one parsed placement constraint such as "node.labels.zone==eu":
// a node matches when its attribute Key equals Value (Equal) or differs from it
// (!Equal). Values compare case-insensitively, as in Docker Swarm; a missing
// label reads as "", so "node.labels.zone!=eu" matches nodes without the label.
type Constraint struct {
	// Key is the canonical attribute name: node.id, node.hostname, node.role,
	// node.labels.<name>, node.platform.os or node.platform.arch.
	Key   string
	Value string
	// Equal is true for "==" and false for "!=".
	Equal bool
}

// ParseConstraint parses "KEY==VALUE" or "KEY!=VALUE", with optional spaces
// around the operator. The known part of the key is case-insensitive and is
// returned in lower case; a label name is kept as written. node.role takes
// manager or worker. Every error wraps ErrInvalidConstraint, says what is
// wrong and shows a correct example, so the API can return it as is.
func ParseConstraint(s string) (Constraint, error) {
	fail := func(format string, args ...any) (Constraint, error) {
		return Constraint{}, fmt.Errorf("%w %q: "+format, append([]any{ErrInvalidConstraint, s}, args...)...)
	}
	if strings.TrimSpace(s) == "" {
		return fail(`empty; write KEY==VALUE or KEY!=VALUE, e.g. "node.labels.zone==eu"`)
	}
	i, op, equal := strings.Index(s, "=="), "==", true
	if j := strings.Index(s, "!="); j >= 0 && (i < 0 || j < i) {
		i, op, equal = j, "!=", false
	}
	if i < 0 {
		return fail(`missing operator == or !=, e.g. "node.role==worker" or "node.role!=manager"`)
	}
	rawKey, value := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+len(op):])
	if rawKey == "" {
		return fail(`missing key before %q, e.g. "node.labels.zone%seu"`, op, op)
	}
	key, err := canonicalKey(rawKey)
	if err != nil {
		return fail(`%v, e.g. "node.labels.zone==eu"`, err)
	}
	if value == "" {
		return fail(`missing value after %q, e.g. "%s%s%s"`, op, key, op, exampleValue(key))
	}
	if strings.Contains(value, "==") || strings.Contains(value, "!=") {
		return fail(`more than one operator; write one comparison per constraint, e.g. "%s%s%s"`, key, op, exampleValue(key))
	}
	if key == keyRole && !strings.EqualFold(value, "manager") && !strings.EqualFold(value, "worker") {
		return fail(`node.role is manager or worker, not %q, e.g. "node.role%sworker"`, value, op)
	}
	return Constraint{Key: key, Value: value, Equal: equal}, nil
}

// ParseConstraints parses each string with ParseConstraint and returns the
// first error.
func ParseConstraints(ss []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(ss))
	for _, s := range ss {
		c, err := ParseConstraint(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// String returns the canonical form, e.g. "node.labels.zone==eu"; it is the
// form explanations use.
func (c Constraint) String() string {
	if c.Equal {
		return c.Key + "==" + c.Value
	}
	return c.Key + "!=" + c.Value
}

// Match reports whether node n satisfies the constraint. A nil node, or a key
// that ParseConstraint would refuse, reads as the attribute "".
func (c Constraint) Match(n *shoalpb.Node) bool {
	return strings.EqualFold(attribute(n, c.Key), c.Value) == c.Equal
}

// ValidateSpread checks the attribute of a spread placement preference, e.g.
// "node.labels.zone". It accepts the keys of constraints. PlaceTasks ignores a
// preference whose key this refuses, so the API edge should call it. Errors
// wrap ErrInvalidPreference.
func ValidateSpread(key string) error {
	if strings.TrimSpace(key) == "" {
		return fmt.Errorf(`%w: empty spread; name a node attribute, e.g. "node.labels.zone"`, ErrInvalidPreference)
	}
	if _, err := canonicalKey(strings.TrimSpace(key)); err != nil {
		return fmt.Errorf(`%w: spread %q: %v, e.g. "node.labels.zone"`, ErrInvalidPreference, key, err)
	}
	return nil
}

// canonicalKey lower-cases the known part of a key and checks it names an
// attribute. Errors carry neither prefix nor example: callers add their own.
func canonicalKey(key string) (string, error) {
	if strings.ContainsAny(key, " \t\r\n") {
		return "", fmt.Errorf("key %q contains a space", key)
	}
	lower := strings.ToLower(key)
	switch lower {
	case keyID, keyHostname, keyRole, keyOS, keyArch:
		return lower, nil
	}
	if strings.HasPrefix(lower, labelPrefix) {
		name := key[len(labelPrefix):]
		if name == "" {
			return "", fmt.Errorf("missing label name after %q", labelPrefix)
		}
		return labelPrefix + name, nil
	}
	return "", fmt.Errorf("unknown key %q; use %s", key, knownKeys)
}

// exampleValue gives a plausible value for key, for error messages.
func exampleValue(key string) string {
	switch key {
	case keyID:
		return "4f1c2e"
	case keyHostname:
		return "web-1"
	case keyRole:
		return "worker"
	case keyOS:
		return "linux"
	case keyArch:
		return "amd64"
	}
	return "eu"
}

// attribute returns the value of a canonical key on node n ("" when absent).
func attribute(n *shoalpb.Node, key string) string {
	switch key {
	case keyID:
		return n.GetId()
	case keyHostname:
		return n.GetDescription().GetHostname()
	case keyRole:
		return roleName(n)
	case keyOS:
		return n.GetDescription().GetOs()
	case keyArch:
		return n.GetDescription().GetArch()
	}
	if strings.HasPrefix(key, labelPrefix) {
		return n.GetSpec().GetLabels()[key[len(labelPrefix):]]
	}
	return ""
}

// roleName is the role of the node's certificate, or the desired role while
// the node has none yet.
func roleName(n *shoalpb.Node) string {
	role := n.GetRole()
	if role == shoalpb.NodeRole_NODE_ROLE_UNSPECIFIED {
		role = n.GetSpec().GetDesiredRole()
	}
	switch role {
	case shoalpb.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	case shoalpb.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	}
	return ""
}
