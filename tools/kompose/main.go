// Command kompose is kompose's own CLI, built at the version pinned in ../go.mod.
package main

import (
	"fmt"
	"os"

	"github.com/kubernetes/kompose/cmd"
)

func main() {
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
