// Package sshtest starts SSH servers for tests: an in-process server built on
// golang.org/x/crypto/ssh that runs commands with /bin/sh the way sshd does,
// and the real OpenSSH sshd on a loopback port with throwaway keys.
//
// It is a test kit: only tests import it.
package sshtest
