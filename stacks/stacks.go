// Package stacks holds the stack definitions bundled into invdeploy, so that
// `invdeploy up` works from a fresh clone with no compose file and no flags.
package stacks

import _ "embed"

// Invoicing is stacks/invoicing/compose.yaml: the Invoicing API built from the
// repository's Dockerfile and its PostgreSQL, hardened. Paths in it resolve
// against the working directory, which is the build context (the repository
// root for `make up`).
//
//go:embed invoicing/compose.yaml
var Invoicing []byte

// InvoicingPath is the name the bundled stack is reported under.
const InvoicingPath = "stacks/invoicing/compose.yaml"
