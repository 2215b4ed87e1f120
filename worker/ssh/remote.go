package ssh

import (
	"strings"

	"github.com/quiesce/quiesce/worker/nodetool"
)

// wrapper runs "$@" so that it cannot outlive its session. OpenSSH without a
// pty ignores signal requests on many versions and never signals a command
// whose client went away, so the wrapper watches its stdin (the channel,
// which the client never writes to): end of input means the client closed
// stdin to cancel, or the session is gone. Either way the command's whole
// process group is terminated, then killed. nodetool is a shell script that
// starts java, so killing the direct child alone would orphan the JVM.
//
// setsid puts the command in a process group of its own (a background child
// of a shell without job control is never a group leader, so setsid does not
// fork and $! is the group id). SIGTERM on the wrapper (a signal request that
// the server honours) does the same.
var wrapper = strings.Join([]string{
	// One line: a csh or tcsh login shell rejects a newline inside quotes.
	`exec 3<&0;`,
	`if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null & else "$@" </dev/null & fi;`,
	`p=$!;`,
	`stop() { kill -s "$1" -- -"$p" 2>/dev/null || kill -s "$1" "$p" 2>/dev/null; };`,
	`trap 'stop TERM' TERM HUP INT;`,
	`{ while read -r _; do :; done; stop TERM; sleep 5; stop KILL; } <&3 >/dev/null 2>&1 &`,
	`w=$!;`,
	`exec 3<&-;`,
	`wait "$p"; s=$?;`,
	`while kill -0 "$p" 2>/dev/null; do wait "$p"; s=$?; done;`,
	`kill "$w" 2>/dev/null;`,
	`exit "$s"`,
}, " ")

// remoteCommand is the string handed to the remote user's shell: the
// wrapper, then every word quoted as an argument of its own, so no value is
// ever parsed by a shell.
func remoteCommand(words []string) string {
	return "exec sh -c " + nodetool.Quote(wrapper) + " quiesce-run " + nodetool.Join(words)
}

// gatedCommand is remoteCommand holding the command until one line arrives
// on the session's input (sh's read takes no byte past the newline, so the
// wrapper still sees the rest of the input); input that ends first exits
// 125, the command never started.
func gatedCommand(words []string) string {
	return "exec sh -c " + nodetool.Quote("IFS= read -r _ || exit 125; "+wrapper) + " quiesce-run " + nodetool.Join(words)
}
