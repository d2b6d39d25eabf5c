package enginestream

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// decodeFile decodes a captured engine stream and returns the BuildKit
// statuses in it and the stream's error.
func decodeFile(t *testing.T, name string) (vertices map[string]bool, logs string, other []string, err error) {
	t.Helper()
	b, rerr := os.ReadFile(name)
	if rerr != nil {
		t.Fatal(rerr)
	}
	vertices = map[string]bool{}
	var log strings.Builder
	err = Decode(bytes.NewReader(b), func(m *Message) error {
		st, ok, err := Trace(m)
		if err != nil {
			t.Fatalf("trace: %v", err)
		}
		if !ok {
			other = append(other, m.ID+m.Stream)
			return nil
		}
		for _, v := range st.Vertexes {
			if v.Completed != nil {
				vertices[v.Name] = v.Cached
			}
		}
		for _, l := range st.Logs {
			log.Write(l.Msg)
		}
		return nil
	})
	return vertices, log.String(), other, err
}

// Payloads captured from Docker 20.10's BuildKit (POST /build?version=2 of a
// three-line Dockerfile with a cache mount): every trace message decodes, and
// the steps, their cache state, the RUN output and the failure come out.
func TestTraceCaptured(t *testing.T) {
	v, _, other, err := decodeFile(t, "testdata/buildkit-ok.jsonl")
	if err != nil {
		t.Fatalf("ok build: %v", err)
	}
	for _, name := range []string{
		"[stage-0 1/3] FROM docker.io/library/debian:bookworm",
		"[stage-0 2/3] RUN --mount=type=cache,target=/cache echo hello > /cache/x && ls /cache && echo done",
		"[stage-0 3/3] RUN echo second",
		"exporting to image",
	} {
		if cached, ok := v[name]; !ok || cached {
			t.Errorf("vertex %q: completed %v cached %v, want completed and built", name, ok, cached)
		}
	}
	if len(other) != 2 || other[0] != "moby.image.id" || other[1] != "Successfully tagged wbuild-exp:1\n" {
		t.Errorf("non-trace messages: %q", other)
	}

	v, _, _, err = decodeFile(t, "testdata/buildkit-cached.jsonl")
	if err != nil {
		t.Fatalf("cached build: %v", err)
	}
	if cached := v["[stage-0 3/3] RUN echo second"]; !cached {
		t.Errorf("rebuild: RUN not reported cached: %v", v)
	}

	_, logs, _, err := decodeFile(t, "testdata/buildkit-fail.jsonl")
	if err == nil || !strings.Contains(err.Error(), "exit code: 3") {
		t.Errorf("failed build: error %v, want the engine's exit code 3", err)
	}
	for _, want := range []string{"step-one-output", "to-stderr", "about-to-fail"} {
		if !strings.Contains(logs, want) {
			t.Errorf("RUN output %q missing from the logs: %q", want, logs)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"status":"ok"}` + "\n" + `{"errorDetail":{"message":"denied"},"error":"denied"}`, "denied"},
		{`{"error":"old engine"}`, "old engine"},
		{`{"status":"ok"`, "read engine progress"},
	} {
		err := Decode(strings.NewReader(tc.in), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if err := Decode(strings.NewReader(`{"status":"a"}{"status":"b"}`), nil); err != nil {
		t.Errorf("clean stream: %v", err)
	}
	raw := json.RawMessage(`"bm90IHByb3RvYnVm"`) // base64 of "not protobuf"
	if _, ok, err := Trace(&Message{ID: TraceID, Aux: &raw}); !ok || err == nil {
		t.Errorf("garbage trace: ok %v err %v, want an error", ok, err)
	}
}

// FuzzDecode: no engine stream makes the decoders panic.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/buildkit-ok.jsonl", "testdata/buildkit-fail.jsonl"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"moby.buildkit.trace","aux":"CgA="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Decode(bytes.NewReader(b), func(m *Message) error {
			_, _, _ = Trace(m)
			return nil
		})
	})
}
