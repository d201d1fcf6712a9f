package core

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
)

// validateVerdictJSON checks a verdict document against schemas/v1/verdict.schema.json.
func validateVerdictJSON(t testing.TB, doc []byte) {
	t.Helper()
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(filepath.Join(testenv.RepoRoot(), "schemas", "v1", "verdict.schema.json"))
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	require.NoError(t, err)
	require.NoError(t, sch.Validate(inst), "verdict JSON: %s", doc)
}
