// Command quiesce takes application-consistent backups of Cassandra
// clusters: see "quiesce --help".
package main

import (
	"os"

	"github.com/quiesce/quiesce/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
