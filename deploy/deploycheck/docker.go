package deploycheck

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Setup is what deploy/scripts/setup.sh (the setup task) installs.
type Setup struct {
	Packages   []string
	ORTVersion string
	ORTSHA256  string
	// ORTMember is the library's path inside the onnxruntime-node npm tarball.
	ORTMember string
}

var (
	reVar     = regexp.MustCompile(`(?m)^(ort_version|ort_sha256)=(\S+)$`)
	rePkgs    = regexp.MustCompile(`(?s)\npackages=\((.*?)\n\)`)
	reMember  = regexp.MustCompile(`package/bin/\S+/libonnxruntime\.so\.1`)
	reARG     = regexp.MustCompile(`^ARG\s+(\w+)(?:=(.*))?$`)
	reGo      = regexp.MustCompile(`(?m)^go (\S+)$`)
	reInstall = regexp.MustCompile(`apt-get install\s+((?:-\S+\s+)*)([^&]*)`)
)

// ParseSetup reads the packages, ONNX Runtime version, sha256 and tarball member of setup.sh.
func ParseSetup(root string) (Setup, error) {
	b, err := os.ReadFile(filepath.Join(root, "deploy", "scripts", "setup.sh"))
	if err != nil {
		return Setup{}, fmt.Errorf("read setup script: %w", err)
	}
	var s Setup
	for _, m := range reVar.FindAllStringSubmatch(string(b), -1) {
		switch m[1] {
		case "ort_version":
			s.ORTVersion = m[2]
		case "ort_sha256":
			s.ORTSHA256 = m[2]
		}
	}
	if m := rePkgs.FindStringSubmatch(string(b)); m != nil {
		s.Packages = strings.Fields(m[1])
	}
	s.ORTMember = reMember.FindString(string(b))
	if s.ORTVersion == "" || len(s.ORTSHA256) != 64 || len(s.Packages) == 0 || s.ORTMember == "" {
		return s, errors.New("setup.sh: ort_version, ort_sha256, packages or the tarball member not found")
	}
	return s, nil
}

// Dockerfile is a parsed Dockerfile: its stages and its ARG defaults.
type Dockerfile struct {
	Args   map[string]string
	Stages []*Stage
}

// Stage is one FROM section.
type Stage struct {
	Name, From string
	// Instructions are the stage's lines after FROM, continuations joined, comments dropped.
	Instructions []string
	Installed    []string
	Env          map[string]string
}

// ParseDockerfile reads a Dockerfile (line continuations, comments, ARG, FROM, RUN
// apt-get install, ENV).
func ParseDockerfile(text string) (*Dockerfile, error) {
	d := &Dockerfile{Args: map[string]string{}}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, errors.New("dockerfile ends in a line continuation")
	}
	for _, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "ARG":
			if m := reARG.FindStringSubmatch(l); m != nil {
				if _, seen := d.Args[m[1]]; !seen || m[2] != "" {
					d.Args[m[1]] = strings.Trim(m[2], `"`)
				}
			}
		case "FROM":
			f := strings.Fields(rest)
			st := &Stage{From: d.expand(f[0]), Env: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			d.Stages = append(d.Stages, st)
			continue
		}
		if len(d.Stages) == 0 {
			if strings.ToUpper(word) != "ARG" {
				return nil, fmt.Errorf("%s before FROM", word)
			}
			continue
		}
		st := d.Stages[len(d.Stages)-1]
		st.Instructions = append(st.Instructions, l)
		switch strings.ToUpper(word) {
		case "RUN":
			for _, m := range reInstall.FindAllStringSubmatch(rest, -1) {
				for _, p := range strings.Fields(m[2]) {
					st.Installed = append(st.Installed, d.expand(p))
				}
			}
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					st.Env[k] = v
				}
			}
		}
	}
	return d, nil
}

var reRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

func (d *Dockerfile) expand(s string) string {
	return reRef.ReplaceAllStringFunc(s, func(m string) string {
		k := strings.Trim(m, "${}")
		if v, ok := d.Args[k]; ok {
			return v
		}
		return m
	})
}

// Stage returns the stage named name, or nil.
func (d *Dockerfile) Stage(name string) *Stage {
	for _, s := range d.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// debianRelease is the release whose package names (libavcodec59, libopencv-core406, ...)
// the Dockerfiles install: the one setup.sh is run on and the tests run on.
const debianRelease = "bookworm"

// DockerfileSpec says what one Dockerfile must agree with.
type DockerfileSpec struct {
	// Path is relative to the repository root.
	Path string
	// ORT: the CPU image fetches ONNX Runtime as setup.sh does; the GPU one brings its own.
	ORT bool
	// RuntimeAlso are packages the runtime stage needs beyond bin/lae's libraries (CUDA).
	RuntimeAlso []string
	// Text, when not empty, is checked instead of the file at Path (tests mutate it).
	Text string
}

// CheckDockerfile checks one Dockerfile against setup.sh and the repository: the Go version
// is go.mod's; the Debian release is bookworm; the build stage installs only setup.sh's
// packages (npm only to fetch ONNX Runtime); the ONNX Runtime version, sha256 and tarball
// member are setup.sh's; every COPY source exists and its .dockerignore does not drop it;
// the runtime stage runs as a non-root numeric user, has a HEALTHCHECK on /healthz, names
// only LAE_* variables lae reads and puts the model where the manifests expect it.
func CheckDockerfile(root string, spec DockerfileSpec, setup Setup) error {
	text := spec.Text
	if text == "" {
		b, err := os.ReadFile(filepath.Join(root, spec.Path))
		if err != nil {
			return fmt.Errorf("read %s: %w", spec.Path, err)
		}
		text = string(b)
	}
	d, err := ParseDockerfile(text)
	if err != nil {
		return fmt.Errorf("parse %s: %w", spec.Path, err)
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", spec.Path, fmt.Sprintf(format, args...)))
	}

	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return fmt.Errorf("read go.mod: %w", err)
	}
	goVersion := reGo.FindSubmatch(gomod)
	if goVersion == nil {
		return errors.New("go.mod: no go directive")
	}
	build, run := d.Stage("build"), d.Stage("runtime")
	if build == nil || run == nil {
		return fmt.Errorf("%s: want stages \"build\" and \"runtime\"", spec.Path)
	}
	if want := "golang:" + string(goVersion[1]) + "-" + debianRelease; build.From != want {
		fail("build stage FROM %s, want %s (go.mod's Go on %s)", build.From, want, debianRelease)
	}
	if want := "debian:" + debianRelease + "-slim"; run.From != want {
		fail("runtime stage FROM %s, want %s", run.From, want)
	}
	for _, p := range build.Installed {
		if !slices.Contains(setup.Packages, p) && (!spec.ORT || p != "npm") {
			fail("build stage installs %s, which setup.sh does not", p)
		}
	}
	for _, p := range []string{"build-essential", "pkg-config", "libopencv-dev", "libavcodec-dev", "libavformat-dev"} {
		if !slices.Contains(build.Installed, p) {
			fail("build stage lacks %s (setup.sh installs it to build lae)", p)
		}
	}
	if spec.ORT {
		if d.Args["ORT_VERSION"] != setup.ORTVersion {
			fail("ORT_VERSION %q, setup.sh installs %s", d.Args["ORT_VERSION"], setup.ORTVersion)
		}
		if d.Args["ORT_SHA256"] != setup.ORTSHA256 {
			fail("ORT_SHA256 %q, setup.sh pins %s", d.Args["ORT_SHA256"], setup.ORTSHA256)
		}
		fetch := strings.Join(build.Instructions, "\n")
		for _, want := range []string{setup.ORTMember, "sha256sum --check", "onnxruntime-node@${ORT_VERSION}"} {
			if !strings.Contains(fetch, want) {
				fail("build stage does not fetch ONNX Runtime as setup.sh does: %q missing", want)
			}
		}
	}
	for _, p := range spec.RuntimeAlso {
		if !slices.Contains(run.Installed, p) {
			fail("runtime stage lacks %s", p)
		}
	}
	ignore, _ := os.ReadFile(filepath.Join(root, spec.Path+".dockerignore"))
	patterns := ignorePatterns(string(ignore))
	var user, health string
	for _, st := range d.Stages {
		for _, in := range st.Instructions {
			word, rest, _ := strings.Cut(in, " ")
			switch strings.ToUpper(word) {
			case "COPY":
				f := strings.Fields(d.expand(rest))
				if strings.HasPrefix(f[0], "--from=") || len(f) < 2 {
					continue
				}
				for _, src := range f[:len(f)-1] {
					if strings.HasPrefix(src, "--") {
						continue
					}
					if st == run && strings.HasSuffix(src, ".onnx") && f[len(f)-1]+filepath.Base(src) != imageModelPath {
						fail("model copied to %s, the manifests expect %s", f[len(f)-1], imageModelPath)
					}
					if ignored(patterns, strings.TrimSuffix(src, "/")) {
						fail("COPY %s: its .dockerignore leaves it out of the context", src)
					}
					if spec.ORT || !strings.Contains(src, "ort-gpu") {
						if _, err := os.Stat(filepath.Join(root, src)); err != nil {
							fail("COPY %s: not in the repository", src)
						}
					}
				}
			case "USER":
				if st == run {
					user = rest
				}
			case "HEALTHCHECK":
				if st == run {
					health = rest
				}
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
		fail("runtime USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", user)
	}
	if !strings.Contains(health, "/healthz") || !strings.Contains(health, "9090") {
		fail("runtime HEALTHCHECK %q does not ask /healthz on the ops port 9090", health)
	}
	for k, v := range run.Env {
		if !KnownEnv(k) {
			fail("ENV %s is not a variable lae reads", k)
		}
		if k == "LAE_DETECTOR_MODEL" && v != imageModelPath {
			fail("ENV LAE_DETECTOR_MODEL=%s, the model is copied to %s", v, imageModelPath)
		}
	}
	return errors.Join(errs...)
}

func ignorePatterns(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// ignored applies .dockerignore patterns (last match wins, ! re-includes) to a path and its
// parent directories.
func ignored(patterns []string, p string) bool {
	out := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.TrimPrefix(pat, "!")
		for q := p; q != "." && q != "/" && q != ""; q = filepath.Dir(q) {
			if ok, _ := filepath.Match(strings.TrimPrefix(pat, "**/"), q); ok {
				out = !neg
				break
			}
			if strings.HasPrefix(pat, "**/") {
				if ok, _ := filepath.Match(strings.TrimPrefix(pat, "**/"), filepath.Base(q)); ok {
					out = !neg
					break
				}
			}
		}
	}
	return out
}

// RuntimePackages maps the shared libraries a built lae binary links (DT_NEEDED) to the
// Debian packages that ship them on this machine (dpkg -S), leaving out libc6 and
// libgcc-s1, which every Debian image has.
func RuntimePackages(binary string) ([]string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", binary, err)
	}
	defer func() { _ = f.Close() }()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("read DT_NEEDED of %s: %w", binary, err)
	}
	var pkgs []string
	for _, lib := range libs {
		out, err := exec.Command("dpkg-query", "-S", "*/"+lib).Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg-query -S %s: %w", lib, err)
		}
		pkg, _, _ := strings.Cut(strings.SplitN(string(out), "\n", 2)[0], ":")
		pkg = strings.TrimSpace(pkg)
		if pkg == "libc6" || pkg == "libgcc-s1" || slices.Contains(pkgs, pkg) {
			continue
		}
		pkgs = append(pkgs, pkg)
	}
	return pkgs, nil
}
