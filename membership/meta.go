package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/memberlist"
)

// ErrMetaTooLarge is returned by New and UpdateMeta when the encoded Meta
// would not fit in memberlist.MetaMaxSize bytes.
var ErrMetaTooLarge = errors.New("membership: meta too large")

// ErrInvalidMeta is returned by New and UpdateMeta for a Meta with an unknown
// role or a malformed API address.
var ErrInvalidMeta = errors.New("membership: invalid meta")

// wireMeta is Meta as it travels in memberlist's alive messages. Boot is not
// part of the public Meta: it is a random id drawn by each New, so that a leave
// announcement is matched to one life of a node and a stale one never marks a
// restarted node as leaving.
type wireMeta struct {
	Role    string `json:"role"`
	APIAddr string `json:"api,omitempty"`
	Boot    string `json:"boot"`
}

// validate checks the fields a node may advertise.
func (m Meta) validate() error {
	if m.Role != RoleManager && m.Role != RoleWorker {
		return fmt.Errorf("%w: Role %q; use %q or %q", ErrInvalidMeta, m.Role, RoleManager, RoleWorker)
	}
	if m.APIAddr != "" {
		if _, _, err := net.SplitHostPort(m.APIAddr); err != nil {
			return fmt.Errorf("%w: APIAddr %q is not IP:PORT: %w", ErrInvalidMeta, m.APIAddr, err)
		}
	}
	return nil
}

// encodeMeta validates m and encodes it with the boot id.
func encodeMeta(m Meta, boot string) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(wireMeta{Role: m.Role, APIAddr: m.APIAddr, Boot: boot})
	if err != nil {
		return nil, fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, the limit is %d; shorten APIAddr",
			ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes a peer's meta. It is lenient: a peer's meta that does not
// parse yields a zero Meta and the error, so the peer is still listed.
func decodeMeta(b []byte) (Meta, string, error) {
	if len(b) == 0 {
		return Meta{}, "", errors.New("empty meta")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, "", err
	}
	return Meta{Role: w.Role, APIAddr: w.APIAddr}, w.Boot, nil
}
