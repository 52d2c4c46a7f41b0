// Package ui is the agent's live dashboard: plain HTML, CSS and JavaScript
// embedded in the binary and served at /ui/ by package api. There is no
// build step and nothing is fetched from elsewhere, so it works air-gapped.
// See README.md for what it shows and how it talks to the API.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files; mount it with the /ui/ prefix stripped.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The page is tiny and changes with the binary: never serve a stale
		// copy after an upgrade. No framing by other sites (clickjacking of
		// the switchover button), and no script or style from elsewhere.
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
