package process

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	shoalpb "shoal/proto"
	"shoal/worker/runtime"
)

// defaultPath is the PATH a task gets unless its env sets one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shimConfig is what the runtime tells the shim beyond the command line,
// in a file rather than flags so that env values (often secrets) do not show
// in ps.
type shimConfig struct {
	Env     []string  `json:"env"`
	Workdir string    `json:"workdir,omitempty"`
	User    *userSpec `json:"user,omitempty"`
}

// userSpec is a resolved container.user; set only when the shim must switch.
type userSpec struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// spec is a task as the process runtime runs it.
type spec struct {
	argv   []string
	config shimConfig
}

// specOf validates t for the process runtime. Its errors wrap
// runtime.ErrInvalidSpec and name the field to fix.
func specOf(t *shoalpb.Task) (spec, error) {
	c := t.GetSpec().GetContainer()
	argv := append(append([]string{}, c.GetCommand()...), c.GetArgs()...)
	if len(argv) == 0 {
		return spec{}, fmt.Errorf("%w: container.command and container.args are both empty; the process runtime runs command followed by args and does not read the image (%q), so set a command", runtime.ErrInvalidSpec, c.GetImage())
	}
	if argv[0] == "" {
		return spec{}, fmt.Errorf("%w: container.command starts with an empty string; name the program to run", runtime.ErrInvalidSpec)
	}
	if _, err := runtime.ParseSignal(c.GetStopSignal()); err != nil {
		return spec{}, fmt.Errorf("container.stop_signal: %w", err)
	}
	s := spec{argv: argv}
	var home string
	if c.GetUser() != "" {
		u, h, err := resolveUser(c.GetUser())
		if err != nil {
			return spec{}, err
		}
		switch {
		case os.Geteuid() == 0:
			s.config.User = u
		case int(u.UID) != os.Geteuid():
			return spec{}, fmt.Errorf("%w: container.user %q: the agent runs as uid %d and only root can run tasks as another user; remove container.user or run the agent as root", runtime.ErrInvalidSpec, c.GetUser(), os.Geteuid())
		}
		home = h
	} else if cur, err := user.Current(); err == nil {
		home = cur.HomeDir
	}
	if home == "" {
		home = "/"
	}
	env, err := buildEnv(c.GetEnv(), home)
	if err != nil {
		return spec{}, err
	}
	s.config.Env = env
	if wd := c.GetWorkdir(); wd != "" {
		if !filepath.IsAbs(wd) {
			return spec{}, fmt.Errorf("%w: container.workdir %q is not an absolute path", runtime.ErrInvalidSpec, wd)
		}
		st, err := os.Stat(wd)
		if err != nil || !st.IsDir() {
			return spec{}, fmt.Errorf("%w: container.workdir %q is not a directory on this node; the process runtime does not create it", runtime.ErrInvalidSpec, wd)
		}
		s.config.Workdir = wd
	}
	return s, nil
}

// buildEnv puts the task's KEY=VALUE entries on top of a minimal PATH and
// HOME; later entries win.
func buildEnv(entries []string, home string) ([]string, error) {
	keys := []string{"PATH", "HOME"}
	vals := map[string]string{"PATH": defaultPath, "HOME": home}
	for _, kv := range entries {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: container.env entry %q is not KEY=VALUE", runtime.ErrInvalidSpec, kv)
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

// resolveUser reads container.user: "uid", "uid:gid", "name" or
// "name:group". A numeric uid unknown to the node gets gid 0, as in Docker.
func resolveUser(s string) (*userSpec, string, error) {
	name, group, hasGroup := strings.Cut(s, ":")
	bad := func(err error) error {
		return fmt.Errorf("%w: container.user %q: %v; use a user known on the node or a numeric uid[:gid]", runtime.ErrInvalidSpec, s, err)
	}
	var u userSpec
	var home string
	var known *user.User
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		u.UID = uint32(n)
		known, _ = user.LookupId(name)
	} else {
		known, err = user.Lookup(name)
		if err != nil {
			return nil, "", bad(err)
		}
		n, err := strconv.ParseUint(known.Uid, 10, 32)
		if err != nil {
			return nil, "", bad(err)
		}
		u.UID = uint32(n)
	}
	if known != nil {
		home = known.HomeDir
		if n, err := strconv.ParseUint(known.Gid, 10, 32); err == nil {
			u.GID = uint32(n)
		}
		if ids, err := known.GroupIds(); err == nil {
			for _, id := range ids {
				if n, err := strconv.ParseUint(id, 10, 32); err == nil {
					u.Groups = append(u.Groups, uint32(n))
				}
			}
		}
	}
	if hasGroup {
		n, err := strconv.ParseUint(group, 10, 32)
		if err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return nil, "", bad(lerr)
			}
			n, err = strconv.ParseUint(g.Gid, 10, 32)
			if err != nil {
				return nil, "", bad(err)
			}
		}
		u.GID = uint32(n)
		// An explicit group replaces the user's supplementary groups.
		u.Groups = nil
	}
	return &u, home, nil
}
