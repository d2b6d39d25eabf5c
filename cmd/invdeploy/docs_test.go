package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/testenv"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

// The docs' examples are run, so they cannot go stale. In README.md and
// docs/**/*.md (not the generated docs/reference):
//
//   - A ```console block is a transcript: lines starting with "$ " are
//     commands (a trailing "\" or an open '...' continues one on the next
//     line), the lines
//     after a command are what it prints (stdout and stderr as a terminal
//     shows them). The block runs as one sh session from the repository
//     root, so "$ cd DIR" and "$ export VAR=..." carry to the next command.
//     A command must exit 0: show a refusal as `$ CMD || echo "exit $?"`.
//     In expected output a line "..." stands for any number of lines and
//     "..." inside a line for any text.
//   - "```console engine" blocks need the local Docker engine (not a
//     running stack): they run without -short, and fail under CI=true when
//     the engine is missing. Projects they create must be in docProjects
//     (removed after the run, also when it fails).
//   - "```console api" blocks need the Invoicing API: they run without
//     -short against the API built from cmd/invoicing-api on a real
//     PostgreSQL (internal/testpg), its address in $API, as the stack of
//     make up serves it (a fresh database, so invoice numbers start at 1).
//   - Every other block of commands (```sh, ```bash, ```shell) must say why
//     it is not run, on the line before it: <!-- not run: REASON -->.

// docExample is one console block.
type docExample struct {
	file  string // relative to the repository root
	line  int    // of the opening fence
	needs string // "": nothing; "engine": the Docker engine; "api": the Invoicing API
	steps []docStep
}

type docStep struct {
	cmd  string
	want []string
}

func (e docExample) name() string {
	return strings.NewReplacer("/", "_", ".", "_").Replace(e.file) + "_L" + strconv.Itoa(e.line)
}

var notRunMarker = regexp.MustCompile(`^<!-- not run: \S.*-->$`)

// docFiles are the markdown files whose examples are held to the code.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && rel == filepath.Join("docs", "reference") {
			return filepath.SkipDir // generated: held by TestReference
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// parseDocExamples returns the console blocks of one markdown file, and an
// error for a block of commands that is neither run nor marked as not run.
func parseDocExamples(file, text string) ([]docExample, []error) {
	var (
		out     []docExample
		errs    []error
		lines   = strings.Split(text, "\n")
		prev    string // the last non-blank line before a fence
		inBlock bool
		fence   string
		cur     *docExample
	)
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if !inBlock {
			if strings.HasPrefix(trimmed, "```") {
				inBlock, fence = true, trimmed
				if n := strings.IndexFunc(trimmed, func(r rune) bool { return r != '`' }); n >= 0 {
					fence = trimmed[:n]
				}
				info := strings.Fields(strings.TrimLeft(trimmed, "`"))
				lang := ""
				if len(info) > 0 {
					lang = info[0]
				}
				switch lang {
				case "console":
					cur = &docExample{file: file, line: i + 1}
					if len(info) > 2 || len(info) == 2 && info[1] != "engine" && info[1] != "api" {
						errs = append(errs, fmt.Errorf("%s:%d: console block %q: want console, console engine or console api", file, i+1, trimmed))
					} else if len(info) == 2 {
						cur.needs = info[1]
					}
				case "sh", "bash", "shell":
					if !notRunMarker.MatchString(prev) {
						errs = append(errs, fmt.Errorf("%s:%d: a %s block of commands that is not run needs <!-- not run: REASON --> on the line before it (or make it a console block)", file, i+1, lang))
					}
				}
				continue
			}
			if trimmed != "" {
				prev = trimmed
			}
			continue
		}
		if trimmed == fence {
			inBlock = false
			if cur != nil {
				if len(cur.steps) == 0 {
					errs = append(errs, fmt.Errorf("%s:%d: console block without a $ command", file, cur.line))
				} else {
					out = append(out, *cur)
				}
			}
			cur, prev = nil, ""
			continue
		}
		if cur == nil {
			continue
		}
		n := len(cur.steps)
		switch {
		case n > 0 && len(cur.steps[n-1].want) == 0 && continues(cur.steps[n-1].cmd):
			cur.steps[n-1].cmd += "\n" + l
		case strings.HasPrefix(l, "$ "):
			cur.steps = append(cur.steps, docStep{cmd: strings.TrimPrefix(l, "$ ")})
		case n == 0:
			errs = append(errs, fmt.Errorf("%s:%d: console block: output before the first $ command", file, i+1))
		default:
			cur.steps[n-1].want = append(cur.steps[n-1].want, l)
		}
	}
	return out, errs
}

// continues reports whether a command goes on on the next line: it ends
// with a backslash or leaves a single-quoted string open.
func continues(cmd string) bool {
	return strings.HasSuffix(cmd, "\\") || strings.Count(cmd, "'")%2 == 1
}

// docStepMarker separates the output of the steps of one block.
const docStepMarker = "@@invdeploy-doc-step@@"

// script is the block as a testscript: one sh session that prints a marker
// with each command's exit code after its output, then the check of it.
func (e docExample) script() string {
	var sh strings.Builder
	sh.WriteString("cd \"$REPO\" || exit 99\n")
	for _, s := range e.steps {
		fmt.Fprintf(&sh, "{ %s\n} 2>&1\nprintf '\\n%s %%d\\n' $?\n", s.cmd, docStepMarker)
	}
	return fmt.Sprintf("# %s:%d\nexec sh block.sh\ndocmatch stdout %s\n-- block.sh --\n%s", e.file, e.line, e.name(), sh.String())
}

// docMatch returns the testscript command `docmatch stdout NAME`: it
// compares the output of example NAME with its transcript: per step, the
// exit code must be 0 and the lines must match (see matchLines).
func docMatch(examples map[string]docExample) func(*testscript.TestScript, bool, []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 2 {
			ts.Fatalf("usage: docmatch stdout NAME")
		}
		e, ok := examples[args[1]]
		if !ok {
			ts.Fatalf("no example %s", args[1])
		}
		got := ts.ReadFile(args[0])
		parts := strings.Split(got, "\n"+docStepMarker+" ")
		if len(parts) != len(e.steps)+1 {
			ts.Fatalf("the block printed %d step markers, want %d:\n%s", len(parts)-1, len(e.steps), got)
		}
		for i, s := range e.steps {
			out := parts[i]
			if i > 0 {
				// Drop the previous marker's exit code.
				_, out, _ = strings.Cut(out, "\n")
			}
			code, _, _ := strings.Cut(parts[i+1], "\n")
			if code != "0" {
				ts.Fatalf("$ %s\nexited %s (show a refusal as CMD || echo \"exit $?\"); it printed:\n%s", s.cmd, code, out)
			}
			gotLines := splitOutput(out)
			if !matchLines(s.want, gotLines) {
				ts.Fatalf("$ %s\nprinted:\n%s\nthe docs (%s:%d) show:\n%s", s.cmd, strings.Join(gotLines, "\n"), e.file, e.line, strings.Join(s.want, "\n"))
			}
		}
	}
}

// splitOutput is the lines of a command's output without trailing blanks.
func splitOutput(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r") // HTTP headers end in CR; a terminal shows none
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines
}

// matchLines matches output lines against the docs' lines: "..." alone
// stands for any number of lines, "..." inside a line for any text; other
// text must be equal (trailing blanks ignored).
func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	w := strings.TrimRight(want[0], " \t")
	if w == "..." {
		for i := 0; i <= len(got); i++ {
			if matchLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	if len(got) == 0 || !matchLine(w, got[0]) {
		return false
	}
	return matchLines(want[1:], got[1:])
}

func matchLine(want, got string) bool {
	if !strings.Contains(want, "...") {
		return want == got
	}
	parts := strings.Split(want, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(got)
}

// docProjects are the projects the engine examples deploy.
var docProjects = []string{"hello", "web"}

// TestDocExamples runs every console block of the docs and checks that no
// block of commands is left unrun without a reason.
func TestDocExamples(t *testing.T) {
	root := testenv.RepoRoot(t)
	byNeed := map[string][]docExample{}
	for _, f := range docFiles(t, root) {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		ex, errs := parseDocExamples(f, string(b))
		for _, err := range errs {
			t.Error(err)
		}
		for _, e := range ex {
			byNeed[e.needs] = append(byNeed[e.needs], e)
		}
	}
	for _, need := range []string{"", "engine", "api"} {
		if len(byNeed[need]) == 0 {
			t.Errorf("no console %s block found: the docs lost their examples", need)
		}
	}
	// run runs examples as testscripts, in parallel unless serial (the
	// engine's examples share projects and the engine), with env added.
	run := func(t *testing.T, ex []docExample, serial bool, env ...string) {
		dir := t.TempDir()
		byName := map[string]docExample{}
		for _, e := range ex {
			byName[e.name()] = e
			if err := os.WriteFile(filepath.Join(dir, e.name()+".txtar"), []byte(e.script()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		p := testscript.Params{
			Dir: dir,
			Setup: func(e *testscript.Env) error {
				e.Setenv("REPO", root)
				for i := 0; i+1 < len(env); i += 2 {
					e.Setenv(env[i], env[i+1])
				}
				home := filepath.Join(e.WorkDir, "home")
				e.Setenv("HOME", home)
				return os.MkdirAll(home, 0o700)
			},
			Cmds: map[string]func(*testscript.TestScript, bool, []string){"docmatch": docMatch(byName)},
		}
		if serial {
			testscript.RunT(serialT{t}, p)
		} else {
			testscript.Run(t, p)
		}
	}
	// The blocks run in the checkout: they must leave it as it was.
	before := gitStatus(t, root)
	t.Cleanup(func() {
		for _, l := range gitStatus(t, root) {
			if !slices.Contains(before, l) {
				t.Errorf("an example changed the checkout: %s", l)
			}
		}
	})
	t.Run("offline", func(t *testing.T) { run(t, byNeed[""], false) })
	t.Run("engine", func(t *testing.T) {
		if testing.Short() {
			t.Skip("examples that use the Docker engine: not with -short")
		}
		testenv.NeedDocker(t)
		needImages(t, "debian:bookworm", "postgres:15") // of docs/examples
		// The examples deploy fixed project names (docProjects), as the docs
		// show them: two test processes on one engine take turns.
		lock, err := os.OpenFile(filepath.Join(os.TempDir(), "invdeploy-doc-examples.lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lock.Close() })
		for _, p := range docProjects {
			t.Cleanup(func() {
				var out strings.Builder
				if code := Main([]string{"down", "-q", "--volumes", "-p", p}, strings.NewReader(""), &out, &out); code != 0 {
					t.Logf("clean up project %s: exit %d: %s", p, code, out.String())
				}
			})
		}
		// The rollout proxy beside invdeploy, as make build and go install
		// put it: the plans shown are those a user gets.
		proxy := filepath.Join(t.TempDir(), "invdeploy-proxy")
		build := exec.Command(testenv.NeedCommand(t, "go"), "build", "-o", proxy, "./cmd/invdeploy-proxy")
		build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the rollout proxy: %v\n%s", err, out)
		}
		run(t, byNeed["engine"], true, "INVDEPLOY_PROXY_BINARY", proxy)
	})
	t.Run("api", func(t *testing.T) {
		if testing.Short() {
			t.Skip("examples that use the Invoicing API on PostgreSQL: not with -short")
		}
		newAPI := startDocAPI(t, root)
		// Each block gets its own database, so it sees what a fresh
		// stack shows (the first invoice number is INV-000001).
		for _, e := range byNeed["api"] {
			run(t, []docExample{e}, true, "API", newAPI(t))
		}
	})
}

// gitStatus is `git status --porcelain` of the checkout, one entry a line.
func gitStatus(t *testing.T, root string) []string {
	cmd := exec.Command("git", "status", "--porcelain", "--untracked-files=all")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Logf("git status: %v (the checkout is not checked for changes)", err)
		return nil
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// needImages reports images the examples use and the engine lacks (make
// images builds them) as missing parts of the test bed.
func needImages(t *testing.T, refs ...string) {
	c, err := deployer.NewClient("")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ref := range refs {
		if _, err := c.ImageInspect(context.Background(), ref); err != nil {
			testenv.Missing(t, "image "+ref+" (make images builds it)")
		}
	}
}

// serialT runs testscript's scripts one after the other.
type serialT struct{ *testing.T }

func (t serialT) Parallel()     {}
func (t serialT) Verbose() bool { return testing.Verbose() }
func (t serialT) Run(name string, f func(testscript.T)) {
	t.T.Run(name, func(t *testing.T) { f(serialT{t}) })
}

// startDocAPI builds cmd/invoicing-api and starts a real PostgreSQL; the
// function it returns runs the API on a new database of that server and
// returns the API's base URL.
func startDocAPI(t *testing.T, root string) func(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := testpg.Start(ctx)
	if err != nil {
		testenv.Missing(t, "postgresql: "+err.Error())
	}
	t.Cleanup(func() { srv.Stop() })
	bin := filepath.Join(t.TempDir(), "invoicing-api")
	build := exec.CommandContext(ctx, testenv.NeedCommand(t, "go"), "build", "-o", bin, "./cmd/invoicing-api")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the API: %v\n%s", err, out)
	}
	n := 0
	return func(t *testing.T) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, srv.AdminURL)
		if err != nil {
			t.Fatal(err)
		}
		n++
		db := fmt.Sprintf("docs_api_%d_%d", os.Getpid(), n)
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
			conn.Close(ctx)
		})
		dbURL, err := url.Parse(srv.AdminURL)
		if err != nil {
			t.Fatal(err)
		}
		dbURL.Path = "/" + db
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		var log strings.Builder
		api := exec.Command(bin)
		api.Env = append(os.Environ(), "DATABASE_URL="+dbURL.String(), "PORT="+strconv.Itoa(port))
		api.Stdout, api.Stderr = &log, &log
		if err := api.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			api.Process.Signal(syscall.SIGTERM)
			api.Wait()
			if t.Failed() {
				t.Logf("the API's log:\n%s", log.String())
			}
		})
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		for {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return base
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("the API did not get ready: %v\n%s", err, log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestDocComposeSnippets loads every compose file the docs show (a yaml
// block with top-level services:) as invdeploy loads one, schema included.
func TestDocComposeSnippets(t *testing.T) {
	root := testenv.RepoRoot(t)
	yamlBlock := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")
	n := 0
	for _, f := range docFiles(t, root) {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			if !regexp.MustCompile("(?m)^services:").MatchString(m[1]) {
				continue
			}
			n++
			dir := t.TempDir()
			file := filepath.Join(dir, "compose.yaml")
			if err := os.WriteFile(file, []byte(m[1]), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := deployer.Load(context.Background(), deployer.LoadOptions{Files: []string{file}, ProjectName: "snippet"}); err != nil {
				t.Errorf("%s: the compose file shown does not load: %v\n%s", f, err, m[1])
			}
		}
	}
	if n == 0 {
		t.Fatal("no compose file found in the docs")
	}
}

// FuzzParseDocExamples: any markdown parses without a panic, and every
// example it returns has a command.
func FuzzParseDocExamples(f *testing.F) {
	f.Add("```console\n$ invdeploy --help\nUsage:\n```\n")
	f.Add("<!-- not run: x -->\n```sh\nls\n```\n```\n```console engine\n$ a '\nb'\n$ c \\\n d\nout\n````\n")
	f.Add("```\n````console api\n")
	f.Fuzz(func(t *testing.T, text string) {
		ex, _ := parseDocExamples("f.md", text)
		for _, e := range ex {
			if len(e.steps) == 0 || e.line < 1 {
				t.Fatalf("example %+v", e)
			}
		}
	})
}

func TestMatchLines(t *testing.T) {
	for _, c := range []struct {
		want, got string
		ok        bool
	}{
		{"a\nb", "a\nb", true},
		{"a\nb", "a\nc", false},
		{"a\n...\nd", "a\nb\nc\nd", true},
		{"a\n...\nd", "a\nd", true},
		{"a\n...", "a\nb", true},
		{"a ... c", "a bbb c", true},
		{"a ... c", "a bbb d", false},
		{"a", "a\nb", false},
		{"", "", true},
	} {
		want, got := splitOutput(c.want), splitOutput(c.got)
		if matchLines(want, got) != c.ok {
			t.Errorf("matchLines(%q, %q) = %v", c.want, c.got, !c.ok)
		}
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile("(?m)^#{1,6} +(.+)$")
	mdFence   = regexp.MustCompile("(?ms)^ *```.*?^ *```")
)

// anchor is GitHub's id of a heading: lower case, punctuation dropped,
// spaces turned into hyphens.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocLinks checks that every relative link of README.md and docs/ (the
// generated reference included) names a file that exists and, with
// #anchor, a heading of that file.
func TestDocLinks(t *testing.T) {
	root := testenv.RepoRoot(t)
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	anchors := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, m := range mdHeading.FindAllStringSubmatch(mdFence.ReplaceAllString(string(b), ""), -1) {
			out[anchor(m[1])] = true
		}
		return out
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		text := mdFence.ReplaceAllString(string(b), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(link, "#")
			target := filepath.Join(root, f)
			if path != "" {
				target = filepath.Join(root, filepath.Dir(f), path)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %s: %v", f, link, err)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(target, ".md") && !anchors(target)[frag] {
				t.Errorf("%s: link %s: no heading #%s in %s", f, link, frag, filepath.Base(target))
			}
		}
	}
}
