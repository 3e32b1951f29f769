package servicespec

import (
	"fmt"
	"regexp"
)

// StackLabel marks the services and networks of a stack with the stack's
// name, as Docker does; a stack is nothing more than what carries it.
const StackLabel = "com.docker.stack.namespace"

var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidateStackName accepts the stack names Docker and compose accept:
// lower-case letters, digits, '_' and '-', starting with a letter or digit.
func ValidateStackName(name string) error {
	if !stackName.MatchString(name) {
		return fmt.Errorf("stack name %q is invalid: use lower-case letters, digits, '_' and '-', starting with a letter or digit", name)
	}
	return nil
}
