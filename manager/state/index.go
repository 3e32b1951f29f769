package state

import (
	"fmt"
	"reflect"
	"strings"
)

// fieldPathIndex indexes a string field reached through a dotted path of
// struct fields ("Spec.Name"); a nil pointer on the way or an empty value
// leaves the object out of the index.
type fieldPathIndex struct{ path string }

func (f *fieldPathIndex) value(obj any) (string, bool) {
	v := reflect.ValueOf(obj)
	for _, name := range strings.Split(f.path, ".") {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return "", false
			}
			v = v.Elem()
		}
		v = v.FieldByName(name)
		if !v.IsValid() {
			return "", false
		}
	}
	if v.Kind() != reflect.String || v.String() == "" {
		return "", false
	}
	return v.String(), true
}

// FromObject implements memdb.SingleIndexer.
func (f *fieldPathIndex) FromObject(obj any) (bool, []byte, error) {
	s, ok := f.value(obj)
	if !ok {
		return false, nil, nil
	}
	return true, []byte(s + "\x00"), nil
}

// FromArgs implements memdb.Indexer.
func (f *fieldPathIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index %s takes one argument", f.path)
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index %s: argument must be a string, got %T", f.path, args[0])
	}
	return []byte(s + "\x00"), nil
}
