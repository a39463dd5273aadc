package filestamp

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestStampChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if got := Of(path); !got.Missing() {
		t.Fatalf("Of(missing file) = %+v, want Missing", got)
	}
	write := func(p, data string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path, "one")
	s1 := Of(path)
	if s1.Missing() {
		t.Fatal("Of(existing file) is Missing")
	}
	if s2 := Of(path); s2 != s1 {
		t.Errorf("two stamps of an unchanged file differ: %+v, %+v", s1, s2)
	}

	// Same size, same modification time, new inode: a file renamed into
	// place.
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	s1 = Of(path)
	tmp := filepath.Join(dir, "f.tmp")
	write(tmp, "two")
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// Windows's os.Stat tells no file identity (see fileID): there only
	// the size and the modification time count.
	if s2 := Of(path); s2 == s1 && runtime.GOOS != "windows" {
		t.Error("a file renamed into place with the same size and time has the old stamp")
	}

	// A symlink swapped to another target (a ConfigMap update) is
	// followed.
	s1 = Of(path)
	other := filepath.Join(dir, "other")
	write(other, "three, longer")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if Of(link) != s1 {
		t.Error("a symlink's stamp is not its target's")
	}
	if err := os.Symlink(other, link+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".new", link); err != nil {
		t.Fatal(err)
	}
	if Of(link) != Of(other) || Of(link) == s1 {
		t.Error("a swapped symlink's stamp did not follow the new target")
	}
}
