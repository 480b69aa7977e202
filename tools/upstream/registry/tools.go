//go:build tools

// crane, which serves a plain registry and pushes to it, for tools/conformance.sh on vnest's
// development host: the suite's tests that pull with `imagePullPolicy:
// Always` pull the stand-ins from it. Test tooling only, apart from the
// components' pins.
package registry

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
)
