package stack

import "fmt"

// FieldError is a compose key that shoal cannot honour, or a value it
// refuses; Path is the key's compose path ("services.web.deploy.replicas").
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}
