package ortenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFindLibrary(t *testing.T) {
	t.Run("explicit missing", func(t *testing.T) {
		_, err := FindLibrary("/nonexistent/libonnxruntime.so")
		require.ErrorContains(t, err, "explicit option")
	})
	t.Run("env missing", func(t *testing.T) {
		t.Setenv(EnvLibPath, "/nonexistent/env-lib.so")
		_, err := FindLibrary("")
		require.ErrorContains(t, err, "$LAE_ORT_LIB")
	})
	t.Run("walks up from the working directory", func(t *testing.T) {
		t.Setenv(EnvLibPath, "")
		root := t.TempDir()
		lib := filepath.Join(root, ".cache", "ort", "libonnxruntime.so.1")
		require.NoError(t, os.MkdirAll(filepath.Dir(lib), 0o755))
		require.NoError(t, os.WriteFile(lib, []byte("x"), 0o644))
		deep := filepath.Join(root, "a", "b")
		require.NoError(t, os.MkdirAll(deep, 0o755))
		t.Chdir(deep)
		got, err := FindLibrary("")
		require.NoError(t, err)
		require.Equal(t, lib, got)
	})
	t.Run("names every place searched", func(t *testing.T) {
		t.Setenv(EnvLibPath, "")
		dir := t.TempDir()
		t.Chdir(dir)
		_, err := FindLibrary("")
		if err == nil {
			t.Skip("the test binary's directory has a library above it; nothing to check")
		}
		require.ErrorContains(t, err, filepath.Join(dir, ".cache", "ort", "libonnxruntime.so.1"))
		require.ErrorContains(t, err, "LAE_ORT_LIB")
	})
}

// TestInit creates the environment from the repository's library (skipped without it), then
// checks that a second Init with the same library is a no-op and another library is refused.
func TestInit(t *testing.T) {
	require.Error(t, Init("/nonexistent/libonnxruntime.so.1"), "a bad path fails and leaves nothing behind")
	lib, err := FindLibrary("")
	if err != nil {
		t.Skipf("no ONNX Runtime library: %v", err)
	}
	require.NoError(t, Init(lib))
	got, err := FindAndInit(lib)
	require.NoError(t, err)
	require.Equal(t, lib, got)
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	require.NoError(t, os.WriteFile(other, []byte("x"), 0o644))
	require.ErrorContains(t, Init(other), "already initialised")
}
