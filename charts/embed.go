// Package charts embeds Starlab's Helm chart so the starlab binary installs it in-process.
package charts

import "embed"

// Starlab is the starlab chart; its root inside the FS is "starlab".
//
//go:embed all:starlab
var Starlab embed.FS
