package logfields

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
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

const zerologPath = "github.com/rs/zerolog"

// floatUnits are the suffixes a float field's key may end with.
var floatUnits = []string{"_ms", "_seconds", "_bytes", "_ratio", "_percent"}

// listed is the part of "go list -json" the test reads.
type listed struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Export     string
	Module     *struct{ Path string }
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Name,Dir,GoFiles,Export,Module"}, args...)...)
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

// Every log field of the module's code (tests and test kits aside) that
// holds a duration says its unit the one way: whole milliseconds under a
// key ending in "_ms"; every float field's key names its unit.
func TestLogFieldsCarryTheirUnit(t *testing.T) {
	all := goList(t, "-export", "-deps", "./...")
	var problems []string
	checked := 0
	for _, p := range all {
		if p.Module == nil || p.Module.Path != "github.com/quiesce/quiesce" || len(p.GoFiles) == 0 ||
			strings.Contains(p.ImportPath, "/internal/testkit/") || strings.Contains(p.ImportPath, "/internal/suite/") {
			continue
		}
		fset := token.NewFileSet()
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			require.NoError(t, err)
			files = append(files, f)
		}
		found, err := check(fset, p.ImportPath, files, importerFor(fset, all))
		require.NoError(t, err, p.ImportPath)
		for _, f := range found {
			problems = append(problems, strings.TrimPrefix(p.ImportPath, "github.com/quiesce/quiesce/")+"/"+f)
		}
		checked++
	}
	require.Greater(t, checked, 10, "the module's packages were checked")
	if len(problems) > 0 {
		t.Fatalf("log fields without their unit:\n%s", strings.Join(problems, "\n"))
	}
}

// The checker finds each way a duration or a unitless float reaches a log.
func TestCheckerFindsUnitlessFields(t *testing.T) {
	all := goList(t, "-export", "-deps", zerologPath, "time")
	src := `package p

import (
	"time"

	"github.com/rs/zerolog"
)

func f(log zerolog.Logger, d time.Duration, x float64) {
	log.Info().Dur("retry_in", d).Msg("")
	log.Info().Interface("wait", d).Msg("")
	log.Info().Str("soft_stop", d.String()).Msg("")
	log.Info().Float64("load", x).Msg("")
	log.Info().Int64("retry_in", d.Milliseconds()).Msg("")
	log.Info().Float64("spread_seconds", d.Seconds()).Msg("")
	_ = log.With().Dur("timeout", d).Logger()
	log.Info().TimeDiff("took", time.Now(), time.Now()).Msg("")

	// What the convention asks for.
	log.Info().Int64("retry_in_ms", d.Milliseconds()).Float64("load_ratio", x).Int("nodes", 3).Msg("")
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	require.NoError(t, err)
	found, err := check(fset, "example.com/p", []*ast.File{f}, importerFor(fset, all))
	require.NoError(t, err)
	require.Equal(t, []string{
		`p.go:10: Dur("retry_in"): log a duration as Int64("…_ms", d.Milliseconds())`,
		`p.go:11: Interface("wait"): a time.Duration value; log Int64("…_ms", d.Milliseconds())`,
		`p.go:12: Str("soft_stop"): a time.Duration value; log Int64("…_ms", d.Milliseconds())`,
		`p.go:13: Float64("load"): a float field's key ends in its unit (_ms, _seconds, _bytes, _ratio, _percent)`,
		`p.go:14: Int64("retry_in"): milliseconds under a key that does not end in _ms`,
		`p.go:15: Float64("spread_seconds"): a duration as Seconds(); log Int64("…_ms", d.Milliseconds())`,
		`p.go:16: Dur("timeout"): log a duration as Int64("…_ms", d.Milliseconds())`,
		`p.go:17: TimeDiff("took"): log a duration as Int64("…_ms", d.Milliseconds())`,
	}, found)
}

// check type-checks one package and lists its unitless log fields.
func check(fset *token.FileSet, path string, files []*ast.File, imp types.Importer) ([]string, error) {
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: imp}
	if _, err := conf.Check(path, fset, files, info); err != nil {
		return nil, err
	}
	var problems []string
	report := func(n ast.Node, format string, args ...any) {
		pos := fset.Position(n.Pos())
		problems = append(problems, fmt.Sprintf("%s:%d: %s", filepath.Base(pos.Filename), pos.Line, fmt.Sprintf(format, args...)))
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			method, ok := zerologField(info, call)
			if !ok || len(call.Args) == 0 {
				return true
			}
			key := constantString(info, call.Args[0])
			field := fmt.Sprintf("%s(%q)", method, key)
			switch method {
			case "Dur", "Durs", "TimeDiff":
				report(call, "%s: log a duration as Int64(\"…_ms\", d.Milliseconds())", field)
				return true
			}
			for _, arg := range call.Args[1:] {
				switch durationUse(info, arg) {
				case "value":
					report(call, "%s: a time.Duration value; log Int64(\"…_ms\", d.Milliseconds())", field)
					return true
				case "Milliseconds":
					if !strings.HasSuffix(key, "_ms") {
						report(call, "%s: milliseconds under a key that does not end in _ms", field)
					}
					return true
				case "":
				default:
					report(call, "%s: a duration as %s(); log Int64(\"…_ms\", d.Milliseconds())", field, durationUse(info, arg))
					return true
				}
			}
			if strings.HasPrefix(method, "Float") && !slices.ContainsFunc(floatUnits, func(u string) bool { return strings.HasSuffix(key, u) }) {
				report(call, "%s: a float field's key ends in its unit (%s)", field, strings.Join(floatUnits, ", "))
			}
			return true
		})
	}
	return problems, nil
}

// zerologField returns the name of a field method of zerolog's Event or
// Context that call calls.
func zerologField(info *types.Info, call *ast.CallExpr) (string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	s, ok := info.Selections[sel]
	if !ok || s.Kind() != types.MethodVal {
		return "", false
	}
	recv := s.Recv()
	if p, ok := recv.(*types.Pointer); ok {
		recv = p.Elem()
	}
	named, ok := recv.(*types.Named)
	if !ok || named.Obj().Pkg() == nil || named.Obj().Pkg().Path() != zerologPath {
		return "", false
	}
	if name := named.Obj().Name(); name != "Event" && name != "Context" {
		return "", false
	}
	return sel.Sel.Name, true
}

// durationUse says how expr holds a duration: "value" for a time.Duration
// (or its String()), the method's name for a conversion such as
// d.Milliseconds(), "" for none.
func durationUse(info *types.Info, expr ast.Expr) string {
	if isDuration(info.TypeOf(expr)) {
		return "value"
	}
	call, ok := expr.(*ast.CallExpr)
	if !ok {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || !isDuration(info.TypeOf(sel.X)) {
		return ""
	}
	if sel.Sel.Name == "String" {
		return "value"
	}
	return sel.Sel.Name
}

func isDuration(t types.Type) bool {
	named, ok := t.(*types.Named)
	return ok && named.Obj().Pkg() != nil && named.Obj().Pkg().Path() == "time" && named.Obj().Name() == "Duration"
}

func constantString(info *types.Info, expr ast.Expr) string {
	if tv, ok := info.Types[expr]; ok && tv.Value != nil && tv.Value.Kind() == constant.String {
		return constant.StringVal(tv.Value)
	}
	return "?"
}
