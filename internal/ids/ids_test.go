package ids

import "testing"

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != 25 {
			t.Fatalf("%q: length %d, want 25", id, len(id))
		}
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				t.Fatalf("%q: character %q outside [a-z0-9]", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestOf(t *testing.T) {
	a, b := Of([]byte("key one")), Of([]byte("key two"))
	if a != Of([]byte("key one")) {
		t.Fatalf("Of is not deterministic: %q then %q", a, Of([]byte("key one")))
	}
	if a == b {
		t.Fatalf("different data, same ID %q", a)
	}
	for _, id := range []string{a, b} {
		if len(id) != 25 {
			t.Fatalf("%q: length %d, want 25", id, len(id))
		}
	}
}
