// Package features embeds the Gherkin features so `starlab test` can run them from any directory.
package features

import "embed"

// FS holds every *.feature file of this directory.
//
//go:embed *.feature
var FS embed.FS
