package ca_test

import (
	"errors"
	"strings"
	"testing"

	"shoal/manager/ca"
)

const testFingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestTokenRoundTrip(t *testing.T) {
	root := newRoot(t, "cluster-a")
	tok, err := ca.NewToken(root.Fingerprint())
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	parsed, err := ca.ParseToken(tok)
	if err != nil {
		t.Fatalf("ParseToken(%q): %v", tok, err)
	}
	if parsed.Fingerprint != root.Fingerprint() {
		t.Fatalf("fingerprint = %q, want %q", parsed.Fingerprint, root.Fingerprint())
	}
	if len(parsed.Secret) != 26 {
		t.Fatalf("secret %q has %d characters, want 26", parsed.Secret, len(parsed.Secret))
	}
	if got := parsed.String(); got != tok {
		t.Fatalf("String() = %q, want %q", got, tok)
	}
	if !strings.HasPrefix(tok, "SHOAL-1-"+root.Fingerprint()+"-") {
		t.Fatalf("token %q does not start with SHOAL-1-<fingerprint>-", tok)
	}
	// Pasted tokens often carry a newline.
	if again, err := ca.ParseToken(" " + tok + "\n"); err != nil || again != parsed {
		t.Fatalf("ParseToken with white space = %+v, %v; want %+v", again, err, parsed)
	}
	other, err := ca.NewToken(root.Fingerprint())
	if err != nil {
		t.Fatalf("NewToken: %v", err)
	}
	if other == tok {
		t.Fatalf("two NewToken calls returned the same token %q", tok)
	}
}

func TestNewTokenRefusesBadFingerprint(t *testing.T) {
	_, err := ca.NewToken("abc")
	checkErr(t, "NewToken", err, ca.ErrInvalidToken)
}

func TestParseTokenMalformed(t *testing.T) {
	secret := "abcdefghijklmnopqrstuvwxyz"
	tests := []struct {
		name    string
		token   string
		message string
	}{
		{"empty", "  ", "got an empty string"},
		{"three parts", "SHOAL-1-" + testFingerprint, "got 3 dash-separated parts"},
		{"five parts", "SHOAL-1-" + testFingerprint + "-" + secret + "-x", "got 5 dash-separated parts"},
		{"bad prefix", "SWARM-1-" + testFingerprint + "-" + secret, `got prefix "SWARM-" (want "SHOAL-")`},
		{"lowercase prefix", "shoal-1-" + testFingerprint + "-" + secret, `got prefix "shoal-"`},
		{"bad version", "SHOAL-2-" + testFingerprint + "-" + secret, `got version "2" (this shoal understands version 1)`},
		{"short fingerprint", "SHOAL-1-" + testFingerprint[1:] + "-" + secret, "fingerprint of 63 characters (want 64 lowercase hex)"},
		{"uppercase fingerprint", "SHOAL-1-" + strings.ToUpper(testFingerprint) + "-" + secret, `'A' at position 11 of the fingerprint`},
		{"non-hex fingerprint", "SHOAL-1-g" + testFingerprint[1:] + "-" + secret, `'g' at position 1 of the fingerprint`},
		{"short secret", "SHOAL-1-" + testFingerprint + "-" + secret[1:], "secret of 25 characters (want 26 lowercase base32)"},
		{"long secret", "SHOAL-1-" + testFingerprint + "-" + secret + "a", "secret of 27 characters"},
		{"secret outside alphabet", "SHOAL-1-" + testFingerprint + "-" + "abcdefghijklmnopqrstuvwxy1", "outside lowercase base32 (a-z, 2-7) at position 26 of the secret"},
		{"uppercase secret", "SHOAL-1-" + testFingerprint + "-" + strings.ToUpper(secret), "outside lowercase base32 (a-z, 2-7) at position 1 of the secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.ParseToken(tt.token)
			if !errors.Is(err, ca.ErrInvalidToken) {
				t.Fatalf("ParseToken(%q) error = %v, want one wrapping ErrInvalidToken", tt.token, err)
			}
			msg := err.Error()
			for _, want := range []string{tt.message, "expected SHOAL-1-<fingerprint>-<secret>", "shoal join-token"} {
				if !strings.Contains(msg, want) {
					t.Fatalf("ParseToken(%q) error %q does not contain %q", tt.token, msg, want)
				}
			}
			if strings.Contains(msg, secret[:20]) || strings.Contains(msg, strings.ToUpper(secret[:20])) {
				t.Fatalf("error %q repeats the secret", msg)
			}
		})
	}
}

func TestSameSecret(t *testing.T) {
	a := "SHOAL-1-" + testFingerprint + "-abcdefghijklmnopqrstuvwxyz"
	b := "SHOAL-1-" + testFingerprint + "-abcdefghijklmnopqrstuvwxy2"
	tests := []struct {
		name string
		x, y string
		want bool
	}{
		{"identical", a, a, true},
		{"trailing newline", a, a + "\n", true},
		{"last character differs", a, b, false},
		{"prefix of the other", a, a[:len(a)-1], false},
		{"empty vs token", "", a, false},
		{"both empty never match", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ca.SameSecret(tt.x, tt.y); got != tt.want {
				t.Fatalf("SameSecret(%q, %q) = %v, want %v", tt.x, tt.y, got, tt.want)
			}
		})
	}
}
