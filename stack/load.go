package stack

import (
	"context"
	"fmt"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadOptions says which compose files to load and how.
type LoadOptions struct {
	// Files are the compose files, merged in order (later files override
	// earlier ones, as `docker compose -f a.yml -f b.yml` does).
	Files []string
	// WorkDir resolves relative paths (bind sources, env_file) and holds
	// the .env file; "" means the directory of the first file.
	WorkDir string
	// Env is the environment used for interpolation; it wins over the
	// .env file in WorkDir, as in compose.
	Env map[string]string
	// Name is the stack's name, used as the compose project name.
	Name string
}

// Load reads, interpolates, merges and validates the compose files against
// the compose schema.
func Load(ctx context.Context, opts LoadOptions) (*types.Project, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	po, err := cli.NewProjectOptions(opts.Files,
		cli.WithWorkingDirectory(opts.WorkDir),
		cli.WithName(opts.Name),
		// Every profile: a service is deployed or named in an error, never
		// left out without a word.
		cli.WithProfiles([]string{"*"}),
		withEnv(opts.Env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithDiscardEnvFile,
	)
	if err != nil {
		return nil, err
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, loadError(opts.Files, err)
	}
	return p, nil
}

// loadError makes compose-go's error name the files when it names none
// (a project-level check, such as an undefined network), and says what to
// do about an undefined network or volume.
func loadError(files []string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "refers to undefined network") || strings.Contains(msg, "refers to undefined volume") {
		err = fmt.Errorf("%w; declare it at the top level of the file (networks: or volumes:), with external: true if it exists already", err)
	}
	for _, f := range files {
		if strings.Contains(msg, f) {
			return err
		}
	}
	return fmt.Errorf("%s: %w", strings.Join(files, ", "), err)
}

func withEnv(env map[string]string) cli.ProjectOptionsFn {
	return func(o *cli.ProjectOptions) error {
		for k, v := range env {
			o.Environment[k] = v
		}
		return nil
	}
}
