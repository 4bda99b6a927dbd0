// Package fuzzcorpus keeps the committed seed corpora of the fuzz tests in step with the seeds
// each test declares in code. The seeds are written in Go (with a name and a comment saying what
// each one is for) and committed as files in `go test fuzz v1` format under
// testdata/fuzz/<FuzzName>/<seed name>, which is where `go test` reads them: every seed runs as
// an ordinary subtest of `go test`, and `go test -fuzz` starts from them.
//
// Check fails a test when a seed's file is missing or differs from the seed; run the tests with
// UPDATE_FUZZ_CORPUS=1 to (re)write the files. Files the fuzzer adds there (failing inputs,
// named by their hash) are left alone.
package fuzzcorpus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// Seed is one named entry of a seed corpus: the arguments of the fuzz function, in order.
type Seed struct {
	Name   string
	Values []any
}

// S is shorthand for a Seed literal.
func S(name string, values ...any) Seed { return Seed{Name: name, Values: values} }

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Check compares testdata/fuzz/<target>/<seed name> with every seed, or writes them when
// UPDATE_FUZZ_CORPUS=1. Call it from the fuzz test, before (*testing.F).Fuzz.
func Check(t testing.TB, target string, seeds []Seed) {
	t.Helper()
	if len(seeds) == 0 {
		t.Fatalf("%s: no seeds", target)
	}
	update := os.Getenv("UPDATE_FUZZ_CORPUS") == "1"
	dir := filepath.Join("testdata", "fuzz", target)
	seen := map[string]bool{}
	for _, s := range seeds {
		if !namePattern.MatchString(s.Name) || seen[s.Name] {
			t.Fatalf("%s: seed name %q is empty, not lower-case-with-dashes, or repeated", target, s.Name)
		}
		seen[s.Name] = true
		want, err := Marshal(s.Values...)
		if err != nil {
			t.Fatalf("%s/%s: %v", target, s.Name, err)
		}
		path := filepath.Join(dir, s.Name)
		if update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the committed seed %s is missing or out of date (%v); run the tests with UPDATE_FUZZ_CORPUS=1",
				target, path, err)
		}
	}
}

// Marshal encodes the arguments of one fuzz input in the `go test fuzz v1` corpus file format.
func Marshal(values ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		switch v := v.(type) {
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case int, int64, uint32, uint64, bool:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		default:
			return nil, fmt.Errorf("fuzz corpus: unsupported argument type %T", v)
		}
	}
	return b.Bytes(), nil
}
