package auth

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
)

// Restrict makes path (a file or directory holding a private key)
// reachable by its owner only: mode's permission bits at most. A path
// that allowed more is changed, with a warning naming what it holds,
// since the key in it may have been read.
func Restrict(path string, mode fs.FileMode, what string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^mode == 0 {
		return nil
	}
	log.Warn(what+" was accessible to other users; restricting it (the key it holds may have been exposed)",
		"path", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "now", fmt.Sprintf("%04o", mode))
	return os.Chmod(path, mode)
}
