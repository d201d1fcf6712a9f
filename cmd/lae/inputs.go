package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lae-screening/lae/internal/config"
)

// input is one thing to scan: a file, a URL, or stdin.
type input struct {
	// name is what the user gave (a file found in a directory: its path).
	name string
	// stdin says the video comes on standard input.
	stdin bool
}

// mediaExts are the file extensions a directory scan picks up.
var mediaExts = []string{".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg",
	".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".y4m", ".gif"}

// expandInputs turns the arguments into inputs: directories become the media files under
// them (recursively, in lexical order, hidden entries skipped), "-" is stdin (once).
func expandInputs(args []string) ([]input, error) {
	var out []input
	stdin := false
	for _, a := range args {
		if a == "-" {
			if stdin {
				return nil, config.Usagef(`"-" (stdin) given twice`)
			}
			stdin = true
			out = append(out, input{name: "-", stdin: true})
			continue
		}
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			out = append(out, input{name: a}) // a file, a URL, or a path whose error the scan reports
			continue
		}
		n := len(out)
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != a && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() && slices.Contains(mediaExts, strings.ToLower(filepath.Ext(p))) {
				out = append(out, input{name: p})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", a, err)
		}
		if len(out) == n {
			return nil, config.Usagef("directory %s holds no media files (%s)", a, strings.Join(mediaExts, " "))
		}
	}
	return out, nil
}

// url is what the ingest worker opens: the argument itself, or for stdin a copy of it in
// the stack's store (FFmpeg needs to seek in most containers, which a pipe cannot do).
func (in input) url(store string) (string, error) {
	if !in.stdin {
		return in.name, nil
	}
	f, err := os.CreateTemp(store, "stdin-*")
	if err != nil {
		return "", fmt.Errorf("copy stdin: %w", err)
	}
	_, err = io.Copy(f, os.Stdin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("copy stdin: %w", err)
	}
	return f.Name(), nil
}
