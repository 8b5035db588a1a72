// Package ui is the presenter page of `starlab demo`: one HTML file, one script and one stylesheet,
// no external resources (it works with no internet).
package ui

import "embed"

// FS holds index.html, app.js and app.css.
//
//go:embed index.html app.js app.css
var FS embed.FS
