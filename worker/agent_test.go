package worker

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLeaderHint(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{status.Error(codes.FailedPrecondition, "not the leader; the leader is at 127.0.0.3:2377"), "127.0.0.3:2377"},
		{status.Error(codes.Unavailable, "not the leader; the leader is at 127.0.0.3:2377"), ""},
		{status.Error(codes.FailedPrecondition, "something else"), ""},
		{errors.New("not the leader; the leader is at 127.0.0.3:2377"), ""},
		{nil, ""},
	}
	for _, c := range cases {
		if got := leaderHint(c.err); got != c.want {
			t.Fatalf("leaderHint(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
