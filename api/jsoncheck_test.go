package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct{ body, where string }{
		{`{"a":"x","b":[1,{"c":"\ud83d\ude00"}],"d":"\u00e9\ufffd"}`, ""},
		{"{\"a\":\"\xff\xfe\"}", "at a "},
		{`{"customer":{"name":"\ud800"}}`, "at customer.name "},
		{`{"a":["ok","\udc00"]}`, "at a[1] "},
		{`{"a":"\ud800\u0041"}`, "at a "},
		{`{"a":"x\ud800"}`, "at a "},
		{`{"a":"\ud800\ud800"}`, "at a "},
		{`{"\udfff":1}`, "at the top level "},
		{`{"currency":"USD","currency":"EUR"}`, `"currency" appears twice in one object (at currency)`},
		{`{"line_items":[{"quantity":1},{"quantity":1,"quantity":2}]}`, `(at line_items[1].quantity)`},
		{`{"metadata":{"k":"1","\u006b":"2"}}`, `"k" appears twice in one object (at metadata.k)`},
		{`{"a":{"x":1},"b":{"x":1}}`, ""},
		{`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"k10":0,"k11":0,"k12":0,"k13":0,"k14":0,"k15":0,"k16":0,"k17":0,"k3":0}`, `(at k3)`},
		{` [ ] `, ""},
		{`"\\ud800"`, ""},
	} {
		err := checkJSON([]byte(tc.body))
		switch {
		case tc.where == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.body, err)
		case tc.where != "" && (ErrorCode(err) != EMALFORMED || !strings.Contains(ErrorMessage(err), tc.where)):
			t.Errorf("%s: %v, want malformed_json naming %q", tc.body, err, tc.where)
		}
	}
}

// FuzzCheckJSON compares checkJSON with encoding/json's token stream: an
// accepted body has no repeated key and decodes without a U+FFFD it did
// not send; a body whose strings are plain UTF-8 is refused exactly when a
// key repeats.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range append(bodySeeds, `{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":1}]}}`, "{\"a\":\"\xff\"}", `{"a":"\ud800"}`,
		`{"a":"\ud83d\ude00"}`, `{"\u0061":1,"a":1}`, `{"a":"\ufffd"}`) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		err := checkJSON(b)
		if err != nil && ErrorCode(err) != EMALFORMED {
			t.Fatalf("%q: %v", b, err)
		}
		dup, replaced := tokenOracle(t, b)
		sentFFFD := bytes.Contains(b, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
		if err == nil && (dup || (replaced && !sentFFFD)) {
			t.Fatalf("%q accepted: repeated key %v, U+FFFD introduced %v", b, dup, replaced)
		}
		plain := utf8.Valid(b) && !bytes.Contains(bytes.ToLower(b), []byte(`\ud`))
		if plain && (err != nil) != dup {
			t.Fatalf("%q: checkJSON %v, but repeated key %v", b, err, dup)
		}
	})
}

// tokenOracle reports whether an object of b repeats a key, and whether a
// decoded string holds U+FFFD, using encoding/json's tokens.
func tokenOracle(t *testing.T, b []byte) (dup, replaced bool) {
	type frame struct {
		object, wantKey bool
		keys            map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return dup, replaced
		}
		if err != nil {
			t.Fatalf("valid JSON %q: %v", b, err)
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				if n := len(stack); n > 0 && stack[n-1].object {
					stack[n-1].wantKey = false
				}
				stack = append(stack, &frame{object: v == '{', wantKey: v == '{', keys: map[string]bool{}})
				continue
			}
			stack = stack[:len(stack)-1]
			valueDone()
		case string:
			replaced = replaced || strings.ContainsRune(v, utf8.RuneError)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				dup = dup || stack[n-1].keys[v]
				stack[n-1].keys[v] = true
				stack[n-1].wantKey = false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// slowObject is decodeObject's general path: encoding/json, then checkJSON.
func slowObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one value")
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not an object")
	}
	return obj, nil
}

// FuzzFastObject: whatever fastObject accepts, encoding/json with checkJSON
// accepts too, with the same value; and what they accept fastObject does
// (for bodies too short to nest beyond maxFastDepth), so the general path
// runs only for refusals.
func FuzzFastObject(f *testing.F) {
	for _, s := range append(bodySeeds, `{"a":1,"a":2}`, "{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `{"a":"\ud83d\ude00\u00e9\n\"\\\/\b\f\r\t"}`,
		`{"\u0061":1,"a":1}`, `{"a":"\ufffd"}`, `{"n":[-0,0.5e-3,1E+2,12,-1.0]}`, `{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"a":tru}`,
		` {"a":[true,false,null,{},[]]} `, `{"a":1,}`, `{"a":[1,]}`, "{\"a\":\"\x01\"}", `{"a":"\ud800\u0041"}`, `{"a":"\uDFFF"}`) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastObject(b)
		slow, err := slowObject(b)
		if ok && err != nil {
			t.Fatalf("%q: fastObject accepted what the general path refuses: %v", b, err)
		}
		if ok && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fastObject %#v, general path %#v", b, fast, slow)
		}
		if !ok && err == nil && len(b) < 2*maxFastDepth {
			t.Fatalf("%q: the general path accepts it, fastObject does not", b)
		}
	})
}
