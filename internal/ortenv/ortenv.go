// Package ortenv finds the ONNX Runtime shared library and creates the process-wide ONNX Runtime
// environment that every onnxruntime_go session needs. The detector (detector/model) and the
// face mesh (ingest/landmarks) share it: onnxruntime_go has one environment per process, so
// whoever loads first creates it and the others reuse it.
package ortenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvLibPath names the environment variable that overrides where the ONNX Runtime shared
// library is looked for.
const EnvLibPath = "LAE_ORT_LIB"

// libRelPath is where `task setup` puts the library, relative to the repository root.
var libRelPath = filepath.Join(".cache", "ort", "libonnxruntime.so.1")

// FindLibrary resolves the ONNX Runtime shared library: explicit (when not empty), else the
// LAE_ORT_LIB environment variable, else .cache/ort/libonnxruntime.so.1 in the current
// directory, the executable's directory, or any of their parents (so tests, which run in
// their package directory, and bin/lae both find the repository's copy). The error lists
// every place it looked.
func FindLibrary(explicit string) (string, error) {
	if explicit != "" {
		if err := isFile(explicit); err != nil {
			return "", fmt.Errorf("onnx runtime library (explicit option): %w", err)
		}
		return explicit, nil
	}
	if env := os.Getenv(EnvLibPath); env != "" {
		if err := isFile(env); err != nil {
			return "", fmt.Errorf("onnx runtime library (from $%s): %w", EnvLibPath, err)
		}
		return env, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		starts = append(starts, filepath.Dir(exe))
	}
	var searched []string
	seen := map[string]bool{}
	for _, dir := range starts {
		for {
			cand := filepath.Join(dir, libRelPath)
			if !seen[cand] {
				seen[cand] = true
				searched = append(searched, cand)
				if isFile(cand) == nil {
					return cand, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("onnx runtime library not found: set $%s or run `go tool -modfile=tools/go.mod task setup`; searched %s",
		EnvLibPath, strings.Join(searched, ", "))
}

func isFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// The ONNX Runtime environment is process-wide in onnxruntime_go: it is created once, by the
// first Init that succeeds, and shared by every session. A failed attempt (wrong path) leaves
// nothing behind, so a later Init with a good path still works; hence a mutex, not sync.Once.
// The environment is never torn down: re-creating it would race with sessions being created
// elsewhere in the process, and it costs nothing while idle.
var (
	envMu  sync.Mutex
	envLib string // library the environment was created from; "" while not created
)

// Init makes sure the environment exists, created from lib. A second Init with another
// library fails: one process holds one ONNX Runtime.
func Init(lib string) error {
	envMu.Lock()
	defer envMu.Unlock()
	if envLib != "" {
		if !sameFile(envLib, lib) {
			return fmt.Errorf("onnx runtime already initialised from %s; cannot switch to %s in one process", envLib, lib)
		}
		return nil
	}
	if ort.IsInitialized() {
		// Someone outside this package set it up; use theirs.
		envLib = lib
		return nil
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise onnx runtime from %s: %w", lib, err)
	}
	envLib = lib
	return nil
}

// FindAndInit resolves the library as FindLibrary does and makes sure the environment exists;
// it returns the library's path.
func FindAndInit(explicit string) (string, error) {
	lib, err := FindLibrary(explicit)
	if err != nil {
		return "", err
	}
	return lib, Init(lib)
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
