// Command testsummary reads `go test -json` on stdin, passes the output of
// failing tests through, lists every skipped test with its reason (so a layer
// that could not run is visible), and ends with one line
// "N passed, N failed, N skipped". It exits 1 when a test or package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	type key struct{ pkg, test string }
	out := map[key][]string{}
	var passed, failed, skipped int
	var skips, failures []string
	pkgFailed := map[string]bool{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors come as plain text
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			out[k] = append(out[k], e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			}
			delete(out, k)
		case "skip":
			if e.Test != "" {
				skipped++
				reason := ""
				for _, l := range out[k] {
					l = strings.TrimSpace(l)
					if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
						reason = l
					}
				}
				skips = append(skips, fmt.Sprintf("%s %s: %s", short(e.Package), e.Test, reason))
			}
			delete(out, k)
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, short(e.Package)+" "+e.Test)
			} else {
				pkgFailed[e.Package] = true
			}
			fmt.Print(strings.Join(out[k], ""))
			delete(out, k)
		}
	}
	sort.Strings(skips)
	if len(skips) > 0 {
		fmt.Println("Skipped (the reason is the test's last line):")
		for _, s := range skips {
			fmt.Println("  " + s)
		}
	}
	for _, f := range failures {
		fmt.Println("FAILED:", f)
	}
	for p := range pkgFailed {
		if !strings.Contains(strings.Join(failures, "\n"), short(p)) {
			fmt.Println("FAILED package:", short(p))
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(pkgFailed) > 0 {
		os.Exit(1)
	}
}

func short(pkg string) string {
	if i := strings.Index(pkg, "/internal/"); i >= 0 {
		return pkg[i+1:]
	}
	if i := strings.Index(pkg, "/cmd/"); i >= 0 {
		return pkg[i+1:]
	}
	return pkg
}
