package ui_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/billing-oss/billing/httpapi/ui"
)

func get(t *testing.T, h http.Handler, target string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPageAndEveryFileItLoads: / is the page with its security headers, and every file the page
// and its modules refer to is served with a type the browser accepts (a module served as
// anything but JavaScript does not run).
func TestPageAndEveryFileItLoads(t *testing.T) {
	h := ui.Handler()
	resp := get(t, h, "/")
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for name, want := range map[string]string{
		"Content-Security-Policy": ui.ContentSecurityPolicy, "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("GET / %s = %q, want %q", name, got, want)
		}
	}
	if !strings.HasPrefix(ui.ContentSecurityPolicy, "default-src 'self';") || strings.Contains(ui.ContentSecurityPolicy, "unsafe") {
		t.Errorf("the policy %q is not strict", ui.ContentSecurityPolicy)
	}
	for _, landmark := range []string{`<main id="main"`, `<nav aria-label="Main">`, `<header`, `lang="en"`, `name="viewport"`} {
		if !strings.Contains(page, landmark) {
			t.Errorf("the page lacks %s", landmark)
		}
	}

	// Follow every reference: src/href in the page, import specifiers in the modules.
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	attr := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)
	imports := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'`)
	seen := map[string]bool{}
	var queue []string
	for _, m := range attr.FindAllStringSubmatch(page, -1) {
		queue = append(queue, m[1])
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp := get(t, h, p)
		text := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
			continue
		}
		if want := wantType[path.Ext(p)]; resp.Header.Get("Content-Type") != want {
			t.Errorf("GET %s: Content-Type %q, want %q", p, resp.Header.Get("Content-Type"), want)
		}
		if path.Ext(p) == ".js" {
			for _, m := range imports.FindAllStringSubmatch(text, -1) {
				if !strings.HasPrefix(m[1], ".") {
					t.Errorf("%s imports %q: only relative imports of our own modules work without a bundler", p, m[1])
					continue
				}
				queue = append(queue, path.Join(path.Dir(p), m[1]))
			}
		}
	}
	for _, must := range []string{"/assets/js/main.js", "/assets/js/views/subscription.js", "/assets/vendor/uPlot.iife.min.js", "/assets/app.css"} {
		if !seen[must] {
			t.Errorf("%s is not reachable from the page (the reference walk is broken)", must)
		}
	}
}

// TestNothingFromOtherHosts: our own files name no other host, so the page fetches nothing from
// the internet (the Content-Security-Policy would refuse it; this finds the mistake sooner).
func TestNothingFromOtherHosts(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, filepath.Join("static", "vendor")) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range url.FindAllString(string(b), -1) {
			if strings.Contains(m, "www.w3.org") { // XML namespace names, never fetched
				continue
			}
			t.Errorf("%s refers to %s", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVendoredFilesMatchTheLock: static/vendor holds the uPlot that package-lock.json pins
// (make ui-vendor refreshes both), with its licence next to it.
func TestVendoredFilesMatchTheLock(t *testing.T) {
	raw, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
			License   string `json:"license"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		t.Fatal(err)
	}
	uplot := lock.Packages["node_modules/uplot"]
	if uplot.Version == "" || !strings.HasPrefix(uplot.Integrity, "sha512-") {
		t.Fatalf("package-lock.json pins no uplot with an integrity hash: %+v", uplot)
	}
	js, err := os.ReadFile("static/vendor/uPlot.iife.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if header := string(js[:min(len(js), 120)]); !strings.Contains(header, "(v"+uplot.Version+")") {
		t.Errorf("static/vendor/uPlot.iife.min.js starts %q, not uPlot v%s as the lock pins: run make ui-vendor", header, uplot.Version)
	}
	licence, err := os.ReadFile("static/vendor/uPlot.LICENSE.txt")
	if err != nil || !strings.Contains(string(licence), uplot.License+" License") {
		t.Errorf("static/vendor/uPlot.LICENSE.txt is missing or not the %s licence: %v", uplot.License, err)
	}
}

func TestRevalidationAndMissingFiles(t *testing.T) {
	h := ui.Handler()
	first := get(t, h, "/assets/app.css")
	etag := first.Header.Get("ETag")
	if first.StatusCode != http.StatusOK || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("GET /assets/app.css: %d, ETag %q", first.StatusCode, etag)
	}
	if again := get(t, h, "/assets/app.css", "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag: %d, want 304", again.StatusCode)
	}
	if changed := get(t, h, "/assets/app.css", "If-None-Match", `"stale"`); changed.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match with another ETag: %d, want 200", changed.StatusCode)
	}
	for _, p := range []string{"/assets/nope.js", "/assets/", "/assets/js", "/assets/../ui.go", "/assets/js/../../ui.go", "/assets//app.css", "/index.html"} {
		if resp := get(t, h, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}
