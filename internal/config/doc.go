// Package config reads quiesce's configuration file: the NATS connection, the
// clusters (how to find and reach their nodes, which volumes hold data, which
// drivers to use) and the backup policies.
package config
