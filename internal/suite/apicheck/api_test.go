package apicheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// listed is the part of "go list -json" the test reads.
type listed struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Imports    []string
	Export     string
}

// goList runs "go list -json" with args in the module's root directory.
func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Name,Dir,GoFiles,Imports,Export"}, args...)...)
	cmd.Dir = moduleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs
		}
		require.NoError(t, err)
		pkgs = append(pkgs, p)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	gomod := strings.TrimSpace(string(out))
	require.NotEmpty(t, gomod, "not in a module")
	return filepath.Dir(gomod)
}

func internalPath(path string) bool {
	return slices.Contains(strings.Split(path, "/"), "internal")
}

// importerFor reads packages from the export data "go list -export" built.
func importerFor(fset *token.FileSet, pkgs []listed) types.Importer {
	exports := map[string]string{}
	for _, p := range pkgs {
		exports[p.ImportPath] = p.Export
	}
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
}

// publicPackages are the module's importable packages outside internal/,
// with their export data and that of every dependency.
func publicPackages(t *testing.T, extra ...string) (public []string, all []listed) {
	t.Helper()
	for _, p := range goList(t, "./...") {
		if p.Name != "main" && len(p.GoFiles) > 0 && !internalPath(p.ImportPath) {
			public = append(public, p.ImportPath)
		}
	}
	args := append([]string{"-export", "-deps"}, public...)
	return public, goList(t, append(args, extra...)...)
}

// Every exported declaration of every public package, followed into the
// structs, interfaces, signatures and methods it exposes, mentions no type of
// an internal package: what `go doc` shows a caller is all it can use.
func TestPublicAPIHasNoInternalTypes(t *testing.T) {
	public, all := publicPackages(t)
	// The check is not vacuous: the packages the README names as the public
	// API are among those checked.
	for _, want := range []string{"messages", "planner", "worker", "worker/ssh", "worker/ebs", "worker/nodetool", "observability", "topology", "pace"} {
		require.Contains(t, public, "github.com/quiesce/quiesce/"+want)
	}
	fset := token.NewFileSet()
	imp := importerFor(fset, all)
	var problems []string
	for _, path := range public {
		pkg, err := imp.Import(path)
		require.NoError(t, err)
		problems = append(problems, internalTypesIn(pkg)...)
	}
	if len(problems) > 0 {
		t.Fatalf("exported declarations that mention internal types:\n%s", strings.Join(problems, "\n"))
	}
}

// mechanism lists the internal packages a public one may build on: they
// hold machinery with nothing for a caller to see or configure.
var mechanism = map[string]bool{
	"github.com/quiesce/quiesce/internal/startstop": true, // the services' start/stop/ready state
}

// A public package builds on public packages only: one that imports an
// internal package may not expose its types today, but it is one exported
// field away from it, and its behaviour depends on what callers outside
// the module cannot see or configure. Pure machinery is the exception.
func TestPublicPackagesImportNoInternalPackage(t *testing.T) {
	var problems []string
	for _, p := range goList(t, "./...") {
		if p.Name == "main" || len(p.GoFiles) == 0 || internalPath(p.ImportPath) {
			continue
		}
		for _, imp := range p.Imports {
			if internalPath(imp) && !mechanism[imp] {
				problems = append(problems, p.ImportPath+" imports "+imp)
			}
		}
	}
	if len(problems) > 0 {
		t.Fatalf("public packages that import internal ones:\n%s", strings.Join(problems, "\n"))
	}
}

// The checker itself finds an internal type a public declaration exposes,
// however deep: a field, a map value, a method of an unexported type
// reachable from an exported function.
func TestCheckerFindsInternalTypes(t *testing.T) {
	const cfg = "github.com/quiesce/quiesce/internal/config"
	_, all := publicPackages(t, cfg)
	fset := token.NewFileSet()
	src := `package p

import "` + cfg + `"

type Plan struct {
	Name   string
	Policy config.Policy
}

type hidden struct{ C config.Cluster }

func (hidden) Get() map[string]config.SSH { return nil }

func Make() hidden { return hidden{} }

type private struct{ X config.NATS }

func ok(config.Config) {}
`
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	require.NoError(t, err)
	conf := types.Config{Importer: importerFor(fset, all)}
	pkg, err := conf.Check("example.com/p", fset, []*ast.File{f}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{
		"p.Plan.Policy: " + cfg + ".Policy",
		"p.hidden.C: " + cfg + ".Cluster",
		"p.hidden.Get: " + cfg + ".SSH",
	}, internalTypesIn(pkg))
}

// internalTypesIn lists, as "pkg.Decl...: type", every internal type that
// pkg's exported declarations expose.
func internalTypesIn(pkg *types.Package) []string {
	w := &walker{pkg: pkg, seen: map[*types.TypeName]bool{}}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		if !token.IsExported(name) {
			continue
		}
		obj := scope.Lookup(name)
		where := pkg.Name() + "." + name
		if tn, ok := obj.(*types.TypeName); ok && !tn.IsAlias() {
			w.named(where, tn)
			continue
		}
		w.typ(where, obj.Type())
	}
	slices.Sort(w.problems)
	return w.problems
}

type walker struct {
	pkg      *types.Package
	seen     map[*types.TypeName]bool
	problems []string
}

// named walks a type declared in the package: what its underlying type and
// its exported methods expose.
func (w *walker) named(where string, tn *types.TypeName) {
	if w.seen[tn] {
		return
	}
	w.seen[tn] = true
	n, ok := tn.Type().(*types.Named)
	if !ok {
		return
	}
	if tps := n.TypeParams(); tps != nil {
		for i := range tps.Len() {
			w.typ(where, tps.At(i).Constraint())
		}
	}
	w.typ(where, n.Underlying())
	for i := range n.NumMethods() {
		if m := n.Method(i); m.Exported() {
			w.typ(where+"."+m.Name(), m.Type())
		}
	}
}

func (w *walker) typ(where string, t types.Type) {
	switch t := t.(type) {
	case *types.Alias:
		if obj := t.Obj(); obj.Pkg() != nil && internalPath(obj.Pkg().Path()) {
			w.problems = append(w.problems, fmt.Sprintf("%s: %s", where, types.TypeString(t, nil)))
			return
		}
		w.typ(where, types.Unalias(t))
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && internalPath(obj.Pkg().Path()) {
			w.problems = append(w.problems, fmt.Sprintf("%s: %s", where, types.TypeString(t, nil)))
			return
		}
		if args := t.TypeArgs(); args != nil {
			for i := range args.Len() {
				w.typ(where, args.At(i))
			}
		}
		// Types of this package are followed, exported or not: an exported
		// function returning an unexported type exposes its fields and
		// methods. Other public packages are checked on their own.
		if obj.Pkg() == w.pkg {
			w.named(w.pkg.Name()+"."+obj.Name(), t.Origin().Obj())
		}
	case *types.Pointer:
		w.typ(where, t.Elem())
	case *types.Slice:
		w.typ(where, t.Elem())
	case *types.Array:
		w.typ(where, t.Elem())
	case *types.Chan:
		w.typ(where, t.Elem())
	case *types.Map:
		w.typ(where, t.Key())
		w.typ(where, t.Elem())
	case *types.Signature:
		if tps := t.TypeParams(); tps != nil {
			for i := range tps.Len() {
				w.typ(where, tps.At(i).Constraint())
			}
		}
		for _, tuple := range []*types.Tuple{t.Params(), t.Results()} {
			for i := range tuple.Len() {
				w.typ(where, tuple.At(i).Type())
			}
		}
	case *types.Struct:
		for i := range t.NumFields() {
			if f := t.Field(i); f.Exported() || f.Embedded() {
				w.typ(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range t.NumEmbeddeds() {
			w.typ(where, t.EmbeddedType(i))
		}
		for i := range t.NumExplicitMethods() {
			if m := t.ExplicitMethod(i); m.Exported() {
				w.typ(where+"."+m.Name(), m.Type())
			}
		}
	case *types.Union:
		for i := range t.Len() {
			w.typ(where, t.Term(i).Type())
		}
	case *types.TypeParam:
		w.typ(where, t.Constraint())
	}
}
