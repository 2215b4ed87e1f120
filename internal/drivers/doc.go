// Package drivers builds each cluster's node tool, volume snapshotter and
// discoverer from the configuration. Each driver kind registers a factory in
// a file of its own (local.go, fs.go, ssh.go, ebs.go), so adding a driver is
// adding a file.
package drivers
