// Package cli is the quiesce command: every role (planner, coordinator,
// worker), the operator commands (submit, status, watch, jobs, backups,
// cancel, retention, preflight) and the embedded demo.
package cli
