// Command buildcontext lists the files `docker build` sends for a context
// directory: every file, minus what its .dockerignore excludes, decided by the
// matcher Docker itself uses (github.com/moby/patternmatcher, pinned in
// ../go.mod). The deployment lint checks the list for secrets without Docker.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	if err := list(root); err != nil {
		fmt.Fprintln(os.Stderr, "buildcontext:", err)
		os.Exit(1)
	}
}

func list(root string) error {
	var patterns []string
	if file, err := os.Open(filepath.Join(root, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(file)
		file.Close()
		if err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf(".dockerignore: %w", err)
	}
	return filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, err := matcher.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if excluded {
			// A later `!` pattern may bring back something below it.
			if entry.IsDir() && !matcher.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if !entry.IsDir() {
			fmt.Println(rel)
		}
		return nil
	})
}
