package serve

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocumentValid holds openapi.yaml to the OpenAPI 3 specification (kin-openapi's
// validation: structure, references, parameters, schemas, examples).
func TestOpenAPIDocumentValid(t *testing.T) {
	b, err := openapiJSON()
	require.NoError(t, err)
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(b)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(t.Context()))
}
