package observer

import (
	"embed"
	"io/fs"
	"net/http"
)

// The UI is plain HTML, CSS and JavaScript written for Starlab (no framework, no CDN, no build step):
// edit the files under ui/ and rebuild the observer.
//
//go:embed ui
var uiFiles embed.FS

func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	fsrv := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
		fsrv.ServeHTTP(w, r)
	})
}
