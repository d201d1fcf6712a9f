package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// HotPathRoots are the trees whose Go benchmarks are the hot paths (colour conversion,
// alignment, crop encoding, batching, message encoding).
var HotPathRoots = []string{"ingest", "detector", "aggregator", "schemas"}

// GoBenchResult is one benchmark line of `go test -bench`.
type GoBenchResult struct {
	Package     string             `json:"package"`
	Name        string             `json:"name"`
	N           int64              `json:"n"`
	NsPerOp     float64            `json:"ns_per_op"`
	BytesPerOp  float64            `json:"bytes_per_op"`
	AllocsPerOp float64            `json:"allocs_per_op"`
	Extra       map[string]float64 `json:"extra,omitempty"`
}

// GoBenchReport is the gobench section.
type GoBenchReport struct {
	Packages []string        `json:"packages"`
	Results  []GoBenchResult `json:"results"`
	// Failed are the packages whose benchmarks did not build or run, with the error.
	Failed map[string]string `json:"failed,omitempty"`
}

// HotPathPackages finds the packages under roots (relative to repo) that declare a Benchmark
// function, as ./relative import paths.
func HotPathPackages(repo string, roots []string) ([]string, error) {
	seen := map[string]bool{}
	for _, root := range roots {
		err := filepath.WalkDir(filepath.Join(repo, root), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("\nfunc Benchmark")) {
				rel, err := filepath.Rel(repo, filepath.Dir(p))
				if err != nil {
					return err
				}
				seen["./"+filepath.ToSlash(rel)] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find benchmarks under %s: %w", root, err)
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// GoBench runs `go test -run ^$ -bench . -benchmem -count 1 -benchtime 200ms` on each
// hot-path package of repo, one package at a time so that one that fails to build does not
// hide the others.
func GoBench(ctx context.Context, repo string, logf func(string, ...any)) (*GoBenchReport, error) {
	pkgs, err := HotPathPackages(repo, HotPathRoots)
	if err != nil {
		return nil, err
	}
	rep := &GoBenchReport{Packages: pkgs}
	for _, pkg := range pkgs {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1", "-benchtime", "200ms", pkg)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		res, perr := ParseGoBench(bytes.NewReader(out), pkg)
		rep.Results = append(rep.Results, res...)
		if err != nil || perr != nil {
			if rep.Failed == nil {
				rep.Failed = map[string]string{}
			}
			msg := fmt.Sprint(errors.Join(err, perr))
			// The failing test's message sits just before go test's last FAIL lines.
			if i := bytes.Index(out, []byte("Error:")); i >= 0 {
				msg += ": " + truncate(out[i:], 400)
			}
			rep.Failed[pkg] = msg
		}
		logf("gobench %s: %d benchmarks", pkg, len(res))
	}
	return rep, nil
}

// ParseGoBench reads the benchmark lines of `go test -bench -benchmem` output. Custom
// metrics (crops/s, ...) go into Extra.
func ParseGoBench(r io.Reader, pkg string) ([]GoBenchResult, error) {
	var out []GoBenchResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // a benchmark's log line, not its result
		}
		res := GoBenchResult{Package: pkg, Name: f[0], N: n}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return out, fmt.Errorf("parse benchmark line %q: %w", sc.Text(), err)
			}
			switch unit := f[i+1]; unit {
			case "ns/op":
				res.NsPerOp = v
			case "B/op":
				res.BytesPerOp = v
			case "allocs/op":
				res.AllocsPerOp = v
			default:
				if res.Extra == nil {
					res.Extra = map[string]float64{}
				}
				res.Extra[unit] = v
			}
		}
		out = append(out, res)
	}
	return out, sc.Err()
}
