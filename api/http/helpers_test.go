package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"

	apihttp "github.com/invdeploy/invdeploy/api/http"
	"github.com/invdeploy/invdeploy/api/postgres"
	"github.com/invdeploy/invdeploy/internal/testpg"
)

func TestMain(m *testing.M) {
	os.Exit(testpg.Main(m, func(ctx context.Context, url string) error {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return err
		}
		defer pool.Close()
		_, err = postgres.Migrate(ctx, pool)
		return err
	}))
}

// env is one server on its own fresh database.
type env struct {
	t    *testing.T
	url  string
	pool *pgxpool.Pool
	logs *bytes.Buffer
	// client sends the requests; http.DefaultClient when nil.
	client *http.Client
}

// lockedBuffer is a log sink safe for concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvAt(t, testpg.New(t))
}

// newEnvAt is a server on the database at dbURL; tune adjusts its pool.
// Its database timeout is generous: the tests share two loaded cores.
func newEnvAt(t *testing.T, dbURL string, tune ...func(*pgxpool.Config)) *env {
	t.Helper()
	return newEnvWith(t, map[string]string{"DATABASE_URL": dbURL, "DATABASE_TIMEOUT": "30s"}, tune...)
}

// newEnvWith is a server configured as cmd/invoicing-api configures it
// from the environment vars (postgres.ParseConfig); tune adjusts its pool.
func newEnvWith(t *testing.T, vars map[string]string, tune ...func(*pgxpool.Config)) *env {
	t.Helper()
	dbcfg, err := postgres.ParseConfig(postgres.Env{Getenv: func(k string) string { return vars[k] }, ReadFile: os.ReadFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dbcfg.Pool
	cfg.MaxConns = 20
	for _, f := range tune {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logs := &lockedBuffer{}
	srv := apihttp.NewServer(apihttp.Config{Service: postgres.NewStore(pool, dbcfg.Timeout),
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), AccessLog: logs}) // as cmd/invoicing-api does
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &env{t: t, url: ts.URL, pool: pool, logs: &logs.Buffer}
}

// req is one request; route is the OpenAPI path template the response is
// validated against, with {id} replaced by id.
type req struct {
	method, route, id, query string
	body                     any // string/[]byte sent as is, else JSON-encoded
	header                   map[string]string
}

type resp struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r resp) str(path ...string) string {
	var v any = r.json
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, _ := strconv.Atoi(p)
			if i < len(x) {
				v = x[i]
			} else {
				v = nil
			}
		}
	}
	switch x := v.(type) {
	case nil:
		return "<nil>"
	case string:
		return x
	case json.Number:
		return x.String()
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// do sends r and validates the response against the OpenAPI document.
func (e *env) do(r req) resp {
	e.t.Helper()
	out, err := e.send(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// send is do returning the client's failure (say, its timeout) instead of
// ending the test: for requests sent from other goroutines.
func (e *env) send(r req) (resp, error) {
	e.t.Helper()
	var body io.Reader
	ct := ""
	switch b := r.body.(type) {
	case nil:
	case string:
		body, ct = strings.NewReader(b), "application/json"
	case []byte:
		body, ct = bytes.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body, ct = bytes.NewReader(j), "application/json"
	}
	path := strings.ReplaceAll(r.route, "{id}", r.id)
	if r.query != "" {
		path += "?" + r.query
	}
	hr, err := http.NewRequest(r.method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		hr.Header.Set("Content-Type", ct)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	client := e.client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(hr)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: %w", r.method, path, err)
	}
	defer res.Body.Close()
	out := resp{status: res.StatusCode, header: res.Header}
	if out.body, err = io.ReadAll(res.Body); err != nil {
		return out, fmt.Errorf("%s %s: read the body: %w", r.method, path, err)
	}
	if err := validateResponse(r.method, r.route, res, out.body); err != nil {
		e.t.Errorf("%s %s -> %d does not match openapi.json: %v\nbody: %s", r.method, path, res.StatusCode, err, out.body)
	}
	if strings.Contains(res.Header.Get("Content-Type"), "json") && len(out.body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(out.body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil {
			out.json, _ = v.(map[string]any)
		}
	}
	return out, nil
}

// want fails unless the response has status (and, for problems, code).
func (e *env) want(r resp, status int, code ...string) resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if len(code) > 0 && r.str("code") != code[0] {
		e.t.Fatalf("code %q, want %q; body %s", r.str("code"), code[0], r.body)
	}
	return r
}

var (
	specOnce sync.Once
	compiler *jsonschema.Compiler
	spec     map[string]any
	specErr  error
)

const specURL = "file:///openapi.json"

func loadSpec() {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(apihttp.OpenAPI))
	if err != nil {
		specErr = err
		return
	}
	spec = doc.(map[string]any)
	compiler = jsonschema.NewCompiler()
	compiler.AssertFormat()
	specErr = compiler.AddResource(specURL, doc)
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// validateResponse checks that the operation declares the status, the
// content type, the headers we promise, and that the body matches the schema.
func validateResponse(method, route string, res *http.Response, body []byte) error {
	specOnce.Do(loadSpec)
	if specErr != nil {
		return specErr
	}
	if res.StatusCode == http.StatusMethodNotAllowed || (res.StatusCode == http.StatusNotFound && spec["paths"].(map[string]any)[route] == nil) {
		route, method = "", "" // router-level problems: validate as a Problem
		return validateBody("#/components/schemas/Problem", body)
	}
	op, ok := spec["paths"].(map[string]any)[route].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		return fmt.Errorf("no operation %s %s in openapi.json", method, route)
	}
	ptr := "#/paths/" + escapePointer(route) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(res.StatusCode)
	r, ok := op["responses"].(map[string]any)[strconv.Itoa(res.StatusCode)].(map[string]any)
	if !ok {
		return fmt.Errorf("status %d is not declared", res.StatusCode)
	}
	if ref, ok := r["$ref"].(string); ok {
		ptr = ref
		name := ref[strings.LastIndex(ref, "/")+1:]
		r = spec["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
	}
	hdrs, _ := r["headers"].(map[string]any)
	for h := range hdrs {
		if h != "Idempotent-Replayed" && res.Header.Get(h) == "" {
			return fmt.Errorf("header %s missing", h)
		}
	}
	content, _ := r["content"].(map[string]any)
	if content == nil {
		if len(body) != 0 {
			return fmt.Errorf("declared without a body, got %d bytes", len(body))
		}
		return nil
	}
	ct := strings.TrimSpace(strings.Split(res.Header.Get("Content-Type"), ";")[0])
	if content[ct] == nil {
		return fmt.Errorf("content type %q not declared", ct)
	}
	if !strings.Contains(ct, "json") {
		return nil
	}
	return validateBody(ptr+"/content/"+escapePointer(ct)+"/schema", body)
}

var (
	schemasMu sync.Mutex
	schemas   = map[string]*jsonschema.Schema{}
)

func validateBody(ptr string, body []byte) error {
	schemasMu.Lock()
	sch, ok := schemas[ptr]
	if !ok {
		var err error
		if sch, err = compiler.Compile(specURL + ptr); err != nil {
			schemasMu.Unlock()
			return fmt.Errorf("compile %s: %w", ptr, err)
		}
		schemas[ptr] = sch
	}
	schemasMu.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	return sch.Validate(v)
}
