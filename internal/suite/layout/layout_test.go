package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/quiesce/quiesce/"

// layers are the product's packages from the bottom up, as
// docs/architecture.md draws them. A package imports only packages of lower
// layers, or of its own layer along an arrow of within.
var layers = [][]string{
	// contracts
	{"messages", "worker/errclass"},
	// shared ground
	{"internal/config", "topology", "internal/startstop", "pace"},
	// core
	{"planner", "worker"},
	// edges: observability, the drivers, the simulated Cassandra node
	{"observability", "worker/ebs", "worker/fs", "worker/local", "worker/nodetool", "worker/noderestore", "worker/ssh", "internal/simnode"},
	// app
	{"internal/cli", "internal/drill", "internal/drivers"},
	// binary
	{"cmd/quiesce"},
}

// within are the imports inside one layer, importer first.
var within = [][2]string{
	{"internal/cli", "internal/drivers"},
	{"internal/cli", "internal/drill"},
	{"internal/drill", "internal/drivers"},
	{"worker/local", "worker/nodetool"},
	{"worker/ssh", "worker/nodetool"},
	{"worker/noderestore", "worker/nodetool"},
}

const (
	testkit = "internal/testkit/"
	suite   = "internal/suite/"
)

// pkgImports are the module packages one package directory imports, each
// with the files importing it: from its test files and from the rest.
type pkgImports struct {
	hasCode bool // the directory has files other than tests
	code    map[string][]string
	tests   map[string][]string
}

func scan(t *testing.T) map[string]*pkgImports {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "module root")
	pkgs := map[string]*pkgImports{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		pi := pkgs[rel]
		if pi == nil {
			pi = &pkgImports{code: map[string][]string{}, tests: map[string][]string{}}
			pkgs[rel] = pi
		}
		into := pi.tests
		if !strings.HasSuffix(p, "_test.go") {
			into, pi.hasCode = pi.code, true
		}
		for _, s := range f.Imports {
			path, err := strconv.Unquote(s.Path.Value)
			if err != nil {
				return err
			}
			if dep, ok := strings.CutPrefix(path, module); ok {
				into[dep] = append(into[dep], filepath.Base(p))
			}
		}
		return nil
	})
	require.NoError(t, err)
	return pkgs
}

func layerOf(pkg string) (int, bool) {
	for i, l := range layers {
		if slices.Contains(l, pkg) {
			return i, true
		}
	}
	return 0, false
}

// TestImportsPointDown: every product package sits in a layer, and imports
// only lower layers or along an arrow drawn within its own.
func TestImportsPointDown(t *testing.T) {
	for pkg, pi := range scan(t) {
		if !pi.hasCode || strings.HasPrefix(pkg, testkit) || strings.HasPrefix(pkg, suite) {
			continue
		}
		from, ok := layerOf(pkg)
		if !ok {
			t.Errorf("package %s is in no layer: add it to docs/architecture.md and to layers here", pkg)
			continue
		}
		for dep, files := range pi.code {
			if strings.HasPrefix(dep, testkit) || strings.HasPrefix(dep, suite) {
				continue // TestProductCodeImportsNoTestKit reports it
			}
			to, ok := layerOf(dep)
			switch {
			case !ok:
				t.Errorf("%s imports %s, which is in no layer", pkg, dep)
			case to < from, to == from && slices.Contains(within, [2]string{pkg, dep}):
			default:
				t.Errorf("%s (%v) imports %s against the layers of docs/architecture.md", pkg, files, dep)
			}
		}
	}
}

// TestProductCodeImportsNoTestKit: test kits are imported by tests and by
// other test kits only, and test suites by nothing.
func TestProductCodeImportsNoTestKit(t *testing.T) {
	for pkg, pi := range scan(t) {
		for _, imports := range []map[string][]string{pi.code, pi.tests} {
			for dep, files := range imports {
				if strings.HasPrefix(dep, suite) {
					t.Errorf("%s (%v) imports the test suite %s", pkg, files, dep)
				}
			}
		}
		if strings.HasPrefix(pkg, testkit) {
			continue
		}
		for dep, files := range pi.code {
			if strings.HasPrefix(dep, testkit) {
				t.Errorf("%s (%v) imports the test kit %s outside its tests", pkg, files, dep)
			}
		}
	}
}
