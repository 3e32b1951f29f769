package stack

import "shoal/manager/servicespec"

// Label marks the services and networks of a stack with its name, as
// Docker does.
const Label = servicespec.StackLabel

// ValidateName accepts the stack names Docker and compose accept: lower-case
// letters, digits, '_' and '-', starting with a letter or digit. The control
// API checks the same rule.
func ValidateName(name string) error {
	return servicespec.ValidateStackName(name)
}
