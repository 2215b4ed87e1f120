// Package config reads quiesce's configuration file: the NATS connection, the
// clusters (how to find and reach their nodes, which volumes hold data, which
// drivers to use) and the backup policies. It is the file's schema and
// nothing else: internal/drivers maps it onto the drivers' and the planner's
// own settings types, and no public package sees it.
package config
