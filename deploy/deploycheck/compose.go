package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "gopkg.in/yaml.v3"

	"github.com/lae-screening/lae/internal/config"
)

// Compose is the part of the Compose specification deploy/compose.yaml uses. Decoding is
// strict: a key it does not list is an error, except top-level x- extensions.
type Compose struct {
	Name     string                    `yaml:"name"`
	Services map[string]ComposeService `yaml:"services"`
	Secrets  map[string]struct {
		File        string `yaml:"file"`
		Environment string `yaml:"environment"`
	} `yaml:"secrets"`
	Volumes map[string]struct{} `yaml:"volumes"`
	// Extensions holds the x-* keys (YAML anchors for the services); any other key here is
	// a mistake.
	Extensions map[string]yamlv3.Node `yaml:",inline"`
}

// ComposeService is one service.
type ComposeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Restart     string            `yaml:"restart"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Secrets     []string          `yaml:"secrets"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

// ParseCompose decodes a compose file strictly.
func ParseCompose(data []byte) (*Compose, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Compose
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode compose file: %w", err)
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("decode compose file: unknown top-level key %q", k)
		}
	}
	return &c, nil
}

var (
	reConfVar  = regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`)
	reConfUser = regexp.MustCompile(`user:\s*(\w+),\s*password:\s*\$(\w+)`)
	reEnvRef   = regexp.MustCompile(`^\$\{(\w+)(:\?[^}]*)?\}$`)
)

// NATSUsers maps each user of deploy/nats/nats-server.conf to its password variable.
func NATSUsers(root string) (map[string]string, []string, error) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats-server.conf"))
	if err != nil {
		return nil, nil, fmt.Errorf("read nats config: %w", err)
	}
	users := map[string]string{}
	for _, m := range reConfUser.FindAllStringSubmatch(string(b), -1) {
		users[m[1]] = m[2]
	}
	var vars []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		line, _, _ = strings.Cut(line, "#")
		for _, m := range reConfVar.FindAllStringSubmatch(line, -1) {
			// $JS.API..., $KV..., $O... are subjects in quotes, not variables.
			if !slices.Contains(vars, m[1]) && !strings.Contains(line, `"$`+m[1]) {
				vars = append(vars, m[1])
			}
		}
	}
	return users, vars, nil
}

// laeCommands are the lae commands a compose service may run, and which must be there.
var laeCommands = map[string]int{"provision": 1, "ingest": 1, "detect": 2, "aggregate": 1, "serve": 1}

// CheckCompose checks deploy/compose.yaml: every file a service mounts exists; the NATS
// server gets its deploy config and every variable that config reads; each lae service runs
// a known command whose --config file is valid for internal/config, names only LAE_*
// variables lae reads, logs in as a user of the NATS config with that user's password
// variable, and serves its ops endpoint on 9090 (the image's HEALTHCHECK); depends_on,
// secrets and named volumes resolve; the roles are all there (two detectors).
func CheckCompose(root string, c *Compose) error {
	dir := filepath.Join(root, "deploy")
	users, confVars, err := NATSUsers(root)
	if err != nil {
		return err
	}
	natsVersion, err := moduleVersion(root, "github.com/nats-io/nats-server/v2")
	if err != nil {
		return err
	}
	var errs []error
	fail := func(svc, format string, args ...any) {
		errs = append(errs, fmt.Errorf("compose service %s: "+format, append([]any{svc}, args...)...))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("compose: no project name"))
	}
	count := map[string]int{}
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		s := c.Services[name]
		if s.Image == "" && s.Build == nil {
			fail(name, "neither image nor build")
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)); err != nil {
				fail(name, "build: no Dockerfile %s in context %s", s.Build.Dockerfile, s.Build.Context)
			}
		}
		if !slices.Contains([]string{"", "no", "always", "on-failure", "unless-stopped"}, s.Restart) {
			fail(name, "restart %q", s.Restart)
		}
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				fail(name, "depends on unknown service %s", dep)
			}
			if !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition) {
				fail(name, "depends_on %s: condition %q", dep, d.Condition)
			}
			if d.Condition == "service_healthy" && c.Services[dep].Healthcheck == nil && !isLae(c.Services[dep]) {
				fail(name, "waits for %s to be healthy, which has no healthcheck", dep)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				fail(name, "secret %s is not defined", sec)
			}
		}
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 {
				fail(name, "volume %q: want source:target[:ro]", v)
				continue
			}
			src, dst := parts[0], parts[1]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				host := filepath.Join(dir, src)
				if _, err := os.Stat(host); err != nil {
					fail(name, "bind mount %s: not in the repository", src)
				}
				mounts[dst] = host
			} else if _, ok := c.Volumes[src]; !ok {
				fail(name, "named volume %s is not defined", src)
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if _, err := strconv.Atoi(parts[len(parts)-1]); err != nil {
				fail(name, "port %q", p)
			}
		}
		if strings.HasPrefix(s.Image, "nats:") {
			if tag := strings.TrimPrefix(s.Image, "nats:"); strings.TrimSuffix(tag, "-alpine") != strings.TrimPrefix(natsVersion, "v") {
				fail(name, "image %s, go.mod's nats-server is %s (the release the tests run)", s.Image, natsVersion)
			}
			conf := ""
			for i, a := range s.Command {
				if a == "-c" && i+1 < len(s.Command) {
					conf = mounts[s.Command[i+1]]
				}
			}
			if conf != filepath.Join(root, "deploy", "nats", "nats-server.conf") {
				fail(name, "does not run deploy/nats/nats-server.conf (-c on a mounted file)")
			}
			for _, v := range confVars {
				if _, ok := s.Environment[v]; !ok {
					fail(name, "the NATS config reads $%s, which the service's environment lacks", v)
				}
			}
			continue
		}
		if !isLae(s) {
			fail(name, "runs neither nats nor a lae command (%q)", s.Command)
			continue
		}
		cmd := s.Command[0]
		count[cmd]++
		if s.Image != "lae:local" {
			fail(name, "image %s, want lae:local (built from deploy/docker/Dockerfile by the provision service)", s.Image)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if !KnownEnv(k) {
				fail(name, "env %s is not a variable lae reads (internal/config EnvNames)", k)
			}
			if reEnvRef.MatchString(v) {
				continue // from the host's environment: not known here
			}
			env[k] = v
		}
		if u, ok := s.Environment["LAE_NATS_USER"]; ok {
			pw, known := users[u]
			if !known {
				fail(name, "NATS user %q is not in deploy/nats/nats-server.conf", u)
			} else if m := reEnvRef.FindStringSubmatch(s.Environment["LAE_NATS_PASSWORD"]); m == nil || m[1] != pw {
				fail(name, "user %s's password must be ${%s} (the variable the NATS config reads)", u, pw)
			}
		}
		cfg, err := composeConfig(s, mounts, env)
		if err != nil {
			fail(name, "%v", err)
			continue
		}
		if want := roleUsers[cmd]; s.Environment["LAE_NATS_USER"] != want {
			fail(name, "lae %s logs in to NATS as %q, want %q", cmd, s.Environment["LAE_NATS_USER"], want)
		}
		if cmd == "serve" && !cfg.Serve.APIOnly {
			fail(name, "lae serve without --api-only runs its own stages on an embedded NATS server, apart from the services here")
		}
		if _, port, err := net.SplitHostPort(cfg.HTTP.Addr); cmd != "provision" && (err != nil || port != "9090") {
			fail(name, "ops endpoint on %q, the image's HEALTHCHECK asks :9090", cfg.HTTP.Addr)
		}
		if f := cfg.Serve.TokensFile; f != "" {
			sec, ok := strings.CutPrefix(f, "/run/secrets/")
			if !ok || !slices.Contains(s.Secrets, sec) {
				fail(name, "tokens file %s is not one of the service's secrets (/run/secrets/<name>)", f)
			}
		}
	}
	for cmd, n := range laeCommands {
		if count[cmd] < n {
			errs = append(errs, fmt.Errorf("compose: %d service(s) run lae %s, want at least %d", count[cmd], cmd, n))
		}
	}
	return errors.Join(errs...)
}

func isLae(s ComposeService) bool {
	_, ok := laeCommands[firstOr(s.Command)]
	return ok
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// composeConfig is the configuration a service's lae starts with (defaults of its command,
// the mounted --config file, the literal LAE_* values, the flags), through internal/config.
func composeConfig(s ComposeService, mounts map[string]string, env map[string]string) (config.Config, error) {
	cmd := s.Command[0]
	args := slices.Clone(s.Command[1:])
	local := ""
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			host, ok := mounts[args[i+1]]
			if !ok {
				return config.Config{}, fmt.Errorf("--config %s is not a mounted file", args[i+1])
			}
			local = host
		}
	}
	c, err := config.LoadOver(config.ForCommand(cmd), local)
	if err != nil {
		return c, err
	}
	if err := applyEnv(&c, env); err != nil {
		return c, err
	}
	if err := parseRoleFlags(cmd, args, &c); err != nil {
		return c, err
	}
	return c, nil
}

// moduleVersion is the version go.mod requires of module.
func moduleVersion(root, module string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + `\s+(v\S+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("go.mod does not require %s", module)
	}
	return string(m[1]), nil
}
