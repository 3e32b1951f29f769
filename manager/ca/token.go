package ca

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
)

// A join token reads SHOAL-1-<fingerprint>-<secret>: the fingerprint lets
// the joining node authenticate the cluster, the secret lets the cluster
// authenticate the node (and decides its role).
const (
	tokenPrefix       = "SHOAL"
	tokenVersion      = "1"
	tokenShape        = "SHOAL-1-<fingerprint>-<secret>"
	fingerprintLength = 64
	secretLength      = 26
	secretAlphabet    = "abcdefghijklmnopqrstuvwxyz234567"
	tokenHint         = "copy it again from 'shoal join-token worker' (or 'manager') on a manager"
)

var secretEncoding = base32.NewEncoding(secretAlphabet).WithPadding(base32.NoPadding)

// Token is a parsed join token.
type Token struct {
	// Fingerprint is the lowercase hex SHA-256 of the root certificate's DER.
	Fingerprint string
	// Secret is 26 lowercase base32 characters (130 random bits).
	Secret string
}

// NewToken returns a new join token for the root with the given fingerprint
// (see Fingerprint), with a secret read from crypto/rand.
func NewToken(fingerprint string) (string, error) {
	if problem := fingerprintProblem(fingerprint); problem != "" {
		return "", fmt.Errorf("%w: cannot make a token: %s; pass the root CA's Fingerprint()", ErrInvalidToken, problem)
	}
	// 17 bytes encode to 28 characters; the first 26 hold 130 random bits.
	buf := make([]byte, 17)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("join token: read random secret: %w", err)
	}
	return Token{Fingerprint: fingerprint, Secret: secretEncoding.EncodeToString(buf)[:secretLength]}.String(), nil
}

// ParseToken parses a join token. Surrounding white space is ignored (tokens
// are pasted). Any other deviation from SHOAL-1-<fingerprint>-<secret> is an
// error wrapping ErrInvalidToken that names the wrong part and the expected
// shape; the message never repeats the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, tokenError("an empty string")
	}
	parts := strings.Split(s, "-")
	if len(parts) != 4 {
		return Token{}, tokenError("%d dash-separated parts", len(parts))
	}
	if parts[0] != tokenPrefix {
		return Token{}, tokenError("prefix %q (want %q)", truncate(parts[0], 10)+"-", tokenPrefix+"-")
	}
	if parts[1] != tokenVersion {
		return Token{}, tokenError("version %q (this shoal understands version %s)", truncate(parts[1], 10), tokenVersion)
	}
	if problem := fingerprintProblem(parts[2]); problem != "" {
		return Token{}, tokenError("%s", problem)
	}
	if problem := secretProblem(parts[3]); problem != "" {
		return Token{}, tokenError("%s", problem)
	}
	return Token{Fingerprint: parts[2], Secret: parts[3]}, nil
}

// String returns the token in its SHOAL-1-<fingerprint>-<secret> form.
func (t Token) String() string {
	return tokenPrefix + "-" + tokenVersion + "-" + t.Fingerprint + "-" + t.Secret
}

// SameSecret reports whether two token strings are identical, in time that
// does not depend on where they differ, so comparing a presented token with
// the cluster's does not leak the secret. Surrounding white space is ignored.
// An empty token matches nothing, not even another empty one, so an unset
// cluster token can never be presented successfully.
func SameSecret(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// tokenError formats a ParseToken error: what was found, the expected shape
// and the fix.
func tokenError(format string, args ...any) error {
	return fmt.Errorf("%w: expected %s, got %s; %s",
		ErrInvalidToken, tokenShape, fmt.Sprintf(format, args...), tokenHint)
}

// fingerprintProblem describes what is wrong with fp, or returns "".
func fingerprintProblem(fp string) string {
	if len(fp) != fingerprintLength {
		return fmt.Sprintf("a fingerprint of %d characters (want %d lowercase hex)", len(fp), fingerprintLength)
	}
	for i, r := range fp {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return fmt.Sprintf("%q at position %d of the fingerprint (want lowercase hex 0-9, a-f)", r, i+1)
		}
	}
	return ""
}

// secretProblem describes what is wrong with secret, or returns "". It
// never quotes the secret.
func secretProblem(secret string) string {
	if len(secret) != secretLength {
		return fmt.Sprintf("a secret of %d characters (want %d lowercase base32)", len(secret), secretLength)
	}
	for i, r := range secret {
		if !strings.ContainsRune(secretAlphabet, r) {
			return fmt.Sprintf("a character outside lowercase base32 (a-z, 2-7) at position %d of the secret", i+1)
		}
	}
	return ""
}

// truncate shortens s for an error message so garbage input stays readable.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
