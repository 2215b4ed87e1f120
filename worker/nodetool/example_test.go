package nodetool_test

import (
	"fmt"

	"github.com/quiesce/quiesce/worker/nodetool"
)

// A command is an argv; the SSH executor hands the remote shell every word
// single-quoted, so no value is ever parsed by it.
func ExampleCommand_ShellString() {
	cmd := nodetool.Command{
		Argv: []string{"/opt/cassandra/bin/nodetool", "snapshot", "-t", "quiesce-it's"},
		Env:  map[string]string{"JAVA_HOME": "/usr/lib/jvm/java-11"},
		Sudo: true,
	}
	s, err := cmd.ShellString()
	if err != nil {
		panic(err)
	}
	fmt.Println(s)
	// Output:
	// 'sudo' '-n' '--' 'env' 'JAVA_HOME=/usr/lib/jvm/java-11' '/opt/cassandra/bin/nodetool' 'snapshot' '-t' 'quiesce-it'\''s'
}

func ExampleParseStatus() {
	out := []byte(`Datacenter: dc1
===============
Status=Up/Down
|/ State=Normal/Leaving/Joining/Moving
--  Address    Load        Tokens  Owns (effective)  Host ID                               Rack
UN  10.0.0.1   105.64 KiB  16      100.0%            6d194555-f6eb-41d0-c000-000000000001  rack1
`)
	nodes, err := nodetool.ParseStatus(out)
	if err != nil {
		panic(err)
	}
	for _, n := range nodes {
		fmt.Println(n.Address, n.Status+n.State, n.LoadBytes, n.HostID)
	}
	// Output:
	// 10.0.0.1 UN 108175 6d194555-f6eb-41d0-c000-000000000001
}
