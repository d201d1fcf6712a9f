package model

import (
	"errors"

	"github.com/lae-screening/lae/internal/ortenv"
)

// EnvLibPath names the environment variable that overrides where the ONNX Runtime shared
// library is looked for.
const EnvLibPath = ortenv.EnvLibPath

// FindLibrary resolves the ONNX Runtime shared library: explicit (when not empty), else the
// LAE_ORT_LIB environment variable, else .cache/ort/libonnxruntime.so.1 in the current
// directory, the executable's directory, or any of their parents (see ortenv.FindLibrary).
func FindLibrary(explicit string) (string, error) { return ortenv.FindLibrary(explicit) }

// initRuntime makes sure the process-wide ONNX Runtime environment exists, created from lib;
// it is shared with the other ONNX Runtime users in the process (ingest/landmarks).
func initRuntime(lib string) error { return ortenv.Init(lib) }

// errProviderUnavailable marks an execution provider that the loaded library does not have.
var errProviderUnavailable = errors.New("execution provider unavailable")
