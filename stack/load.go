package stack

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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

// yamlError is compose-go's YAML syntax error: the file, then the parser's
// words.
var yamlError = regexp.MustCompile(`^failed to parse (.+?): yaml: (.*)$`)

// yamlPosition is where the parser stopped, the last position it names
// ("line 4, column 11: " or "line 4: ").
var yamlPosition = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: `)

// yamlSyntaxError puts a YAML syntax error in the form FILE:LINE:COLUMN:
// MESSAGE (FILE:LINE: when the parser gives no column). With zeroBased,
// the message counts lines from 0, and they are shifted to count from 1.
func yamlSyntaxError(file, msg string, zeroBased bool) error {
	if zeroBased {
		msg = yamlPosition.ReplaceAllStringFunc(msg, func(pos string) string {
			m := yamlPosition.FindStringSubmatch(pos)
			line, _ := strconv.Atoi(m[1])
			return strings.Replace(pos, "line "+m[1], "line "+strconv.Itoa(line+1), 1)
		})
	}
	all := yamlPosition.FindAllStringSubmatchIndex(msg, -1)
	if len(all) == 0 {
		return fmt.Errorf("%s: YAML syntax error: %s", file, msg)
	}
	last := all[len(all)-1]
	pos := file + ":" + msg[last[2]:last[3]]
	if last[4] >= 0 {
		pos += ":" + msg[last[4]:last[5]]
	}
	return fmt.Errorf("%s: YAML syntax error: %s%s", pos, msg[:last[0]], msg[last[1]:])
}

// zeroBasedLines reports whether err is a parser error of go.yaml.in/yaml/v4
// (v4.0.0-rc.4): unlike its scanner errors, those count lines from 0. The
// type is internal to that module, hence the name; a later version that
// fixes the count or renames the type makes this false, and the corpus
// case yaml-indent shows the line that results.
func zeroBasedLines(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if fmt.Sprintf("%T", e) == "libyaml.ParserError" {
			return true
		}
	}
	return false
}

// loadError makes compose-go's error name the files when it names none
// (a project-level check, such as an undefined network), and says what to
// do about an undefined network or volume.
func loadError(files []string, err error) error {
	msg := err.Error()
	if m := yamlError.FindStringSubmatch(msg); m != nil {
		return yamlSyntaxError(m[1], m[2], zeroBasedLines(err))
	}
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
