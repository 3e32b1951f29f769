package stack

import (
	"fmt"
	"regexp"
)

// Label marks the services and networks of a stack with its name, as
// Docker does (manager/dispatcher's StackLabel is the same string).
const Label = "com.docker.stack.namespace"

var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidateName accepts the stack names Docker and compose accept: lower-case
// letters, digits, '_' and '-', starting with a letter or digit.
func ValidateName(name string) error {
	if !stackName.MatchString(name) {
		return fmt.Errorf("stack name %q is invalid: use lower-case letters, digits, '_' and '-', starting with a letter or digit", name)
	}
	return nil
}
