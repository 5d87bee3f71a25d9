//go:build tools

// Package tools pins versitygw as a dependency of this stub module, so that go.mod and go.sum
// fix its exact version and every dependency's checksum. stack/localstack.py builds the binary
// from here with `go build`, as it builds FerretDB.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
