//go:build tools

// Package tools pins FerretDB as a dependency of this stub module, so that go.mod and go.sum
// fix its exact version and every dependency's checksum. stack/localstack.py builds the
// binary from here with `go build`; `go install ...@version` cannot be used because it
// queries the module's version list, which the Go module proxy refuses for FerretDB.
package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
