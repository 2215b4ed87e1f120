package cassandra

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/template"
)

var (
	//go:embed conf/cassandra.yaml.tmpl
	yamlTemplateText string
	//go:embed conf/logback.xml
	logbackXML []byte
	//go:embed conf/logback-tools.xml
	logbackToolsXML []byte
	//go:embed conf/jvm17-server.options
	serverOptions string
	//go:embed conf/jvm17-clients.options
	clientOptions string
)

var yamlTemplate = template.Must(template.New("cassandra.yaml").Option("missingkey=error").Parse(yamlTemplateText))

// yamlParams fill conf/cassandra.yaml.tmpl.
type yamlParams struct {
	ClusterName string
	NumTokens   int
	Dir         string
	Seeds       string
	Addr        string
	StoragePort int
	NativePort  int
}

// renderYAML renders the template and then applies overrides: each key
// replaces the top-level entry of that name (the line and the indented lines
// under it) or is appended. Cassandra's YAML loader refuses duplicate keys,
// so an override cannot simply be appended. A value that spans lines or
// starts with a space is a block (an indented list or map) and goes under its
// key; any other is a scalar on the key's line.
func renderYAML(p yamlParams, overrides map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	if err := yamlTemplate.Execute(&buf, p); err != nil {
		return nil, err
	}
	if len(overrides) == 0 {
		return buf.Bytes(), nil
	}
	var out []string
	skipping := false
	for line := range strings.SplitSeq(strings.TrimRight(buf.String(), "\n"), "\n") {
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '-' {
			key, _, _ := strings.Cut(line, ":")
			_, skipping = overrides[strings.TrimSpace(key)]
		}
		if !skipping {
			out = append(out, line)
		}
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := overrides[k]
		if strings.Contains(v, "\n") || strings.HasPrefix(v, " ") { // a block: a list or a map
			out = append(out, k+":", strings.TrimRight(v, "\n"))
		} else {
			out = append(out, k+": "+v)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n"), nil
}

// renderRackDC is a node's cassandra-rackdc.properties.
func renderRackDC(dc, rack string) []byte {
	return fmt.Appendf(nil, "dc=%s\nrack=%s\n", dc, rack)
}

// jvmWords splits an options file into argv words: one option a line, and a
// line of an option and its value ("--add-exports X") into two words, since
// java takes "--add-exports X" as one word for an unknown option.
func jvmWords(text string) []string {
	var words []string
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words = append(words, strings.Fields(line)...)
	}
	return words
}

// nodeAddrs returns n consecutive addresses from base, all in 127.0.0.0/8.
func nodeAddrs(base string, n int) ([]string, error) {
	a, err := netip.ParseAddr(base)
	if err != nil {
		return nil, fmt.Errorf("base address: %w", err)
	}
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	addrs := make([]string, n)
	for i := range n {
		if !a.Is4() || !loopback.Contains(a) {
			return nil, fmt.Errorf("node address %s is not in 127.0.0.0/8: nodes listen on loopback only", a)
		}
		addrs[i] = a.String()
		a = a.Next()
	}
	return addrs, nil
}
