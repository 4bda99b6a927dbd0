// Package ui is the browser dashboard: a static single-page application (HTML, CSS and ES
// modules, no build step) embedded in the binary and served at / and /assets/. The page talks
// only to the public /v1 API, with an API key the user pastes once and the browser keeps in
// sessionStorage; these static files need no key and hold no data.
//
// Front-end libraries are vendored into static/vendor/ by `make ui-vendor` (vendor.sh), from
// the versions package-lock.json pins; nothing is fetched from the internet at run time, and
// the Content-Security-Policy below would refuse it anyway.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed static
var embedded embed.FS

// Paths are the routes the dashboard is served at; routes.go mounts Handler on each. They are
// not API operations, so openapi.yaml does not describe them.
var Paths = []string{"/", "/assets/*"}

// ContentSecurityPolicy lets the page load scripts, styles, images and API responses from
// this origin only: no inline script or style, no plugin, no framing, no other host.
const ContentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

// contentTypes are set explicitly rather than from the system's MIME table, which may lack
// JavaScript (a browser refuses a module served with the wrong type).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
}

type file struct {
	body        []byte
	etag        string
	contentType string
}

var (
	filesOnce sync.Once
	files     map[string]file // by path under static/
)

// load reads every embedded file once, with a strong ETag from its content: the files have no
// modification time and no hash in their names, so browsers revalidate them (no-cache) and get
// 304s until a new binary changes them.
func load() map[string]file {
	filesOnce.Do(func() {
		files = map[string]file{}
		root, err := fs.Sub(embedded, "static")
		if err != nil {
			panic(err) // the embed directive guarantees static/
		}
		err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			body, err := fs.ReadFile(root, p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(body)
			ct, ok := contentTypes[path.Ext(p)]
			if !ok {
				ct = "application/octet-stream"
			}
			files[p] = file{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: ct}
			return nil
		})
		if err != nil {
			panic(err)
		}
	})
	return files
}

// Handler serves the page at / and its files at /assets/<path under static/>.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		name := "index.html"
		if r.URL.Path != "/" {
			rest, ok := strings.CutPrefix(r.URL.Path, "/assets/")
			if !ok || rest == "" || path.Clean(rest) != rest {
				notFound(w)
				return
			}
			name = rest
		}
		f, ok := load()[name]
		if !ok {
			notFound(w)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, f.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(f.body)
	})
}

func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == etag || candidate == "*" {
			return true
		}
	}
	return false
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte("404 not found\n"))
}
