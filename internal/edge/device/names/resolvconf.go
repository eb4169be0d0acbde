package names

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// marker is the first line of a resolv.conf we wrote.
const marker = "# Written by omni edge for the DNS of its networks; `omni edge down` restores the original.\n"

// backupName is the backup's file name in the state directory.
const backupName = "resolv.conf.omni-backup"

// backup is what the host's resolv.conf was before we wrote it.
type backup struct {
	Original string   `json:"original"`          // its content (through the link, if one)
	Link     string   `json:"link,omitempty"`    // its target when it was a symbolic link
	Missing  bool     `json:"missing,omitempty"` // there was none
	Written  []string `json:"written"`           // what we wrote: the last two, should we die between saving this and writing the file
}

// file is the host's resolv.conf as it is.
type file struct {
	content, link string // link: the target of a symbolic link
	exists        bool
}

func (h *Host) backupPath() string { return filepath.Join(h.opt.StateDir, backupName) }

// loadBackup returns the backup, nil when there is none.
func (h *Host) loadBackup() (*backup, error) {
	if h.opt.StateDir == "" {
		return nil, nil
	}
	data, err := os.ReadFile(h.backupPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var b backup
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	if err != nil {
		return nil, fmt.Errorf("dns: resolv.conf backup: %w", err)
	}
	return &b, nil
}

// saveBackup writes the backup atomically, mode 0600.
func (h *Host) saveBackup(b *backup) error {
	data, _ := json.Marshal(b) // strings only: cannot fail
	err := os.MkdirAll(h.opt.StateDir, 0o700)
	var f *os.File
	if err == nil {
		f, err = os.CreateTemp(h.opt.StateDir, backupName+".*") // mode 0600
	}
	if err == nil {
		defer os.Remove(f.Name()) // nothing left to remove once renamed
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(f.Name(), h.backupPath())
	}
	if err != nil {
		return fmt.Errorf("dns: resolv.conf backup: %w", err)
	}
	return nil
}

func (h *Host) readFile() (file, error) {
	var f file
	f.link, _ = os.Readlink(h.opt.ResolvConf) // "" when not a link
	data, err := os.ReadFile(h.opt.ResolvConf)
	f.content, f.exists = string(data), err == nil || f.link != "" // a dangling link reads as empty
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("dns: %w", err)
	}
	return f, nil
}

// ours is whether f is a file we wrote.
func (b *backup) ours(f file) bool {
	return f.exists && f.link == "" && slices.Contains(b.Written, f.content)
}

// writeFile writes resolv.conf for the applied interfaces, saving the
// original first. A file changed by someone else since we wrote it becomes
// the new original.
func (h *Host) writeFile() error {
	b, err := h.loadBackup()
	if err != nil {
		return err
	}
	cur, err := h.readFile()
	if err != nil {
		return err
	}
	if b == nil || !b.ours(cur) {
		if b != nil {
			h.log.Warn("dns: resolv.conf changed since omni edge wrote it; its new content is the original now", "path", h.opt.ResolvConf)
		}
		b = &backup{Original: cur.content, Link: cur.link, Missing: !cur.exists}
	}
	var top *link
	var zones []string
	for _, l := range h.links {
		if top == nil || l.seq > top.seq {
			top = l
		}
		zones = append(zones, l.zones...)
	}
	slices.Sort(zones)
	content := render(b.Original, top.server.String(), slices.Compact(zones))
	if b.ours(cur) && cur.content == content {
		return nil
	}
	b.Written = append(b.Written[max(0, len(b.Written)-1):], content)
	if err := h.saveBackup(b); err != nil {
		return err
	}
	if cur.link != "" {
		if err := os.Remove(h.opt.ResolvConf); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	}
	return writeInPlace(h.opt.ResolvConf, content)
}

// writeInPlace truncates and writes path: never a rename over it, which
// fails on a bind mount (/etc/resolv.conf under `ip netns exec`).
func writeInPlace(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		_, err = f.WriteString(content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("dns: writing %s: %w", path, err)
	}
	return nil
}

// restoreFile puts the backup back and deletes it, unless the file is no
// longer the one we wrote: then the file is kept (with a warning).
func (h *Host) restoreFile() error {
	b, err := h.loadBackup()
	if err != nil || b == nil {
		return err
	}
	cur, err := h.readFile()
	if err != nil {
		return err
	}
	switch {
	case !b.ours(cur):
		h.log.Warn("dns: resolv.conf changed since omni edge wrote it; keeping it", "path", h.opt.ResolvConf)
	case b.Link != "" || b.Missing:
		err = os.Remove(h.opt.ResolvConf)
		if err == nil && b.Link != "" {
			err = os.Symlink(b.Link, h.opt.ResolvConf)
		}
	default:
		err = writeInPlace(h.opt.ResolvConf, b.Original)
	}
	if err != nil {
		return fmt.Errorf("dns: restoring resolv.conf: %w", err)
	}
	if b.ours(cur) {
		h.log.Info("dns: resolv.conf restored", "path", h.opt.ResolvConf)
	}
	if err := os.Remove(h.backupPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// render is our resolv.conf: the marker, one nameserver, the zones in
// front of the original search list (the last search or domain line, as
// the resolver reads it), and the original options lines.
func render(original, server string, zones []string) string {
	search, out := []string{}, marker+"nameserver "+server+"\n"
	var options string
	for _, line := range strings.Split(original, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "search":
			search = f[1:]
		case len(f) > 1 && f[0] == "domain":
			search = f[1:2]
		case len(f) > 0 && f[0] == "options":
			options += strings.Join(f, " ") + "\n"
		}
	}
	list := slices.Clone(zones)
	for _, d := range search {
		if !slices.Contains(list, strings.TrimSuffix(d, ".")) {
			list = append(list, d)
		}
	}
	return out + "search " + strings.Join(list, " ") + "\n" + options
}
