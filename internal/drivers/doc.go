// Package drivers builds each cluster's node tool, volume snapshotter and
// discoverer from the configuration. The driver kinds are listed in one
// table (kinds.go); settings.go maps the configuration file onto each
// driver's own settings type and onto the planner's.
package drivers
