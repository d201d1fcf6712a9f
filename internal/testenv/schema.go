package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

var verdictSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open(filepath.Join(RepoRoot(), "schemas", "v1", "verdict.schema.json"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("verdict.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("verdict.schema.json")
})

// RequireVerdictJSON fails the test unless doc is a verdict document as
// schemas/v1/verdict.schema.json describes it (formats asserted); the schema is compiled once.
func RequireVerdictJSON(tb testing.TB, doc []byte) {
	tb.Helper()
	sch, err := verdictSchema()
	require.NoError(tb, err, "compile verdict.schema.json")
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	require.NoError(tb, err)
	require.NoError(tb, sch.Validate(inst), "verdict JSON does not match the schema:\n%s", doc)
}
