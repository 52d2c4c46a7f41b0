package core

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// forbidden are the imports that do I/O or reach the clock or processes.
// The core and every Baton package it depends on must import none of them,
// so that "deterministic" is something the compiler checks, not a comment.
var forbidden = []string{
	"os", "os/exec", "os/signal", "os/user", "net", "net/http", "syscall", "path/filepath",
	"golang.org/x/sys/unix", "io/ioutil",
}

// TestCoreImportsNoIO walks the core's whole dependency closure (go list
// -deps): Baton packages in it may import none of the forbidden packages,
// and no package outside the standard library and Baton may appear at all.
func TestCoreImportsNoIO(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	const module = "github.com/baton-ha/baton/"
	var ours []string
	for dec.More() {
		var p struct {
			ImportPath string
			Standard   bool
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard {
			continue
		}
		if !strings.HasPrefix(p.ImportPath, module) {
			// Only what the pure packages need (HKDF for the heartbeat key).
			if p.ImportPath != "golang.org/x/crypto/hkdf" {
				t.Errorf("the core depends on %s: a third-party package it should not need", p.ImportPath)
			}
			continue
		}
		ours = append(ours, p.ImportPath)
		for _, imp := range p.Imports {
			for _, f := range forbidden {
				if imp == f {
					t.Errorf("%s imports %s: the core and what it depends on must not do I/O", p.ImportPath, imp)
				}
			}
		}
	}
	for _, want := range []string{module + "internal/core", module + "internal/quorum", module + "internal/cluster"} {
		found := false
		for _, p := range ours {
			found = found || p == want
		}
		if !found {
			t.Errorf("%s is not in the core's dependencies; the check looked at %v", want, ours)
		}
	}
	for _, p := range ours {
		for _, shell := range []string{"internal/agent", "internal/quorum/raftstore", "internal/cluster/udp", "internal/frontdoor", "internal/driver", "internal/config"} {
			if strings.HasPrefix(p, module+shell) {
				t.Errorf("the core depends on %s, which belongs to the shell", p)
			}
		}
	}
}

// TestCoreReadsNoClock: time enters the core only as the now argument of its
// methods, and the core starts no goroutine.
func TestCoreReadsNoClock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	clock := map[string]bool{"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
		"NewTimer": true, "NewTicker": true, "Tick": true}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: the core starts a goroutine", fset.Position(x.Pos()))
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "time" && clock[x.Sel.Name] {
					t.Errorf("%s: the core calls time.%s; take the time as an argument", fset.Position(x.Pos()), x.Sel.Name)
				}
			}
			return true
		})
	}
}
