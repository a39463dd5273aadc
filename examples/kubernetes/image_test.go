package kubernetes

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the repository's root, the Dockerfile's build context.
const root = "../.."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	from, name string
	body       []instruction
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages []stage
		line   string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line += cont + " "
			continue
		}
		line += text
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			s := stage{from: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before any FROM", in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// goVersion is go.mod's go line as major.minor.
func goVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// The image: a Go build stage of go.mod's Go version, then distroless
// static with both binaries, run as the non-root user the pods ask for.
func TestDockerfileStages(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want 2 (build, run)", len(stages))
	}
	build, final := stages[0], stages[1]
	if want := "golang:" + goVersion(t); build.from != want {
		t.Errorf("build stage FROM %s, want %s (go.mod's go line)", build.from, want)
	}
	if !strings.Contains(final.from, "distroless/static") || !strings.HasSuffix(final.from, ":nonroot") {
		t.Errorf("final stage FROM %s, want distroless/static, :nonroot", final.from)
	}

	var copied []string
	var user, entrypoint string
	for _, in := range final.body {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if f[0] != "--from="+build.name {
				t.Errorf("COPY %s: want only the build stage's binaries in the image", in.args)
				continue
			}
			for _, src := range f[1 : len(f)-1] {
				copied = append(copied, strings.TrimSuffix(f[len(f)-1], "/")+"/"+filepath.Base(src))
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) != 1 {
				t.Errorf("ENTRYPOINT %s: want the exec form with the binary alone", in.args)
			} else {
				entrypoint = argv[0]
			}
		}
	}
	slices.Sort(copied)
	if want := []string{"/usr/local/bin/wsgate", "/usr/local/bin/wsgate-backend"}; !slices.Equal(copied, want) {
		t.Errorf("the image holds %v, want %v", copied, want)
	}
	if entrypoint != "/usr/local/bin/wsgate" {
		t.Errorf("ENTRYPOINT %q, want /usr/local/bin/wsgate", entrypoint)
	}

	// runAsNonRoot can only check a numeric user; the pods run as it.
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("USER %q, want a numeric non-zero uid", user)
	}
	o := loadManifests(t)
	for _, d := range o.deployments {
		if u := d.Spec.Template.Spec.SecurityContext.RunAsUser; u == nil || *u != n {
			t.Errorf("Deployment %s runAsUser %v, want the image's %d", d.Name, deref(u), n)
		}
		c := container(t, d)
		if len(c.Command) > 0 && !slices.Contains(copied, c.Command[0]) {
			t.Errorf("Deployment %s runs %s, which the image does not hold", d.Name, c.Command[0])
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil || !slices.Contains(strings.Fields(string(ignore)), ".git") {
		t.Errorf(".dockerignore %v: want it to leave out .git", err)
	}
}

// No Docker engine runs where the tests do, so this runs the Dockerfile's
// go build commands as its build stage would (its ENV, from the root of
// the build context, /out/ in a temporary directory) and checks that the
// binaries run in an image without libc: static, no ELF interpreter.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binaries are Linux ELF files; checked on Linux")
	}
	build := parseDockerfile(t)[0]
	out := t.TempDir()
	env := os.Environ()
	var built []string
	for _, in := range build.body {
		switch in.cmd {
		case "ENV":
			env = append(env, strings.Fields(in.args)...)
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			if !slices.Contains(env, "CGO_ENABLED=0") {
				t.Errorf("RUN %s: CGO_ENABLED=0 is not set before it", in.args)
			}
			for _, cmd := range strings.Split(in.args, "&&") {
				if !strings.Contains(cmd, "-trimpath") {
					t.Errorf("%s: want -trimpath", strings.TrimSpace(cmd))
				}
				m := regexp.MustCompile(`-o /out/(\S+)`).FindStringSubmatch(cmd)
				if m == nil {
					t.Fatalf("%s: want -o /out/NAME", strings.TrimSpace(cmd))
				}
				built = append(built, m[1])
			}
			sh := exec.Command("sh", "-c", strings.ReplaceAll(in.args, "/out/", out+"/"))
			sh.Dir, sh.Env = root, env
			if b, err := sh.CombinedOutput(); err != nil {
				t.Fatalf("RUN %s: %v\n%s", in.args, err, b)
			}
		}
	}
	slices.Sort(built)
	if want := []string{"wsgate", "wsgate-backend"}; !slices.Equal(built, want) {
		t.Fatalf("the build stage builds %v, want %v", built, want)
	}
	for _, name := range built {
		path := filepath.Join(out, name)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: dynamically linked, it cannot run on distroless/static", name)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v (%v)", name, libs, err)
		}
		f.Close()
	}
	if b, err := exec.Command(filepath.Join(out, "wsgate"), "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "wsgate ") {
		t.Errorf("wsgate version = %q, %v", b, err)
	}
}
