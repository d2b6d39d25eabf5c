package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// checkJSON rejects what encoding/json accepts silently but changes or
// loses: a string that is not valid UTF-8 (raw bytes such as 0xff, or an
// escaped lone surrogate such as "\ud800"), which the decoder would store as
// U+FFFD, and an object that repeats a key (at any depth), of which the
// decoder would keep the last. Both are malformed_json naming where. body
// must already be one syntactically valid JSON value.
func checkJSON(body []byte) error {
	c := jsonChecker{b: body}
	c.value("")
	return c.err
}

// jsonChecker walks a valid JSON text once; paths are written like the
// params of validation errors: line_items[2].description, metadata.k.
type jsonChecker struct {
	b   []byte
	i   int
	err error
}

func (c *jsonChecker) peek() byte {
	if c.i < len(c.b) {
		return c.b[c.i]
	}
	return 0
}

func (c *jsonChecker) space() {
	for c.i < len(c.b) && (c.b[c.i] == ' ' || c.b[c.i] == '\t' || c.b[c.i] == '\n' || c.b[c.i] == '\r') {
		c.i++
	}
}

func (c *jsonChecker) value(path string) {
	c.space()
	switch c.peek() {
	case '{':
		c.object(path)
	case '[':
		c.array(path)
	case '"':
		c.str(path, false)
	default: // number, true, false, null
		for c.i < len(c.b) && c.b[c.i] != ',' && c.b[c.i] != ']' && c.b[c.i] != '}' {
			c.i++
		}
	}
}

func (c *jsonChecker) object(path string) {
	c.i++ // {
	var (
		few  []string // linear search is cheaper for the usual handful of keys
		many map[string]bool
	)
	for c.err == nil {
		c.space()
		if c.peek() != '"' {
			c.i++ // }
			return
		}
		key := c.str(path, true)
		if c.err != nil {
			return
		}
		at := key
		if path != "" {
			at = path + "." + key
		}
		dup := many[key]
		for _, k := range few {
			dup = dup || k == key
		}
		if dup {
			c.err = Errorf(EMALFORMED, "The key %s appears twice in one object (at %s); send each key once.", strconv.Quote(key), at)
			return
		}
		if many == nil && len(few) < 16 {
			few = append(few, key)
		} else {
			if many == nil {
				many = make(map[string]bool, 2*len(few))
				for _, k := range few {
					many[k] = true
				}
				few = nil
			}
			many[key] = true
		}
		c.space()
		c.i++ // :
		c.value(at)
		c.space()
		if c.peek() == ',' {
			c.i++
		}
	}
}

func (c *jsonChecker) array(path string) {
	c.i++ // [
	for n := 0; c.err == nil; n++ {
		c.space()
		if c.peek() == ']' || c.peek() == 0 {
			c.i++
			return
		}
		c.value(fmt.Sprintf("%s[%d]", path, n))
		c.space()
		if c.peek() == ',' {
			c.i++
		}
	}
}

// str checks the string at c.i and returns its value when decode is set
// (object keys); where names the enclosing value for the error.
func (c *jsonChecker) str(where string, decode bool) string {
	start := c.i
	c.i++ // opening quote
	escaped := false
	for c.i < len(c.b) && c.b[c.i] != '"' {
		if c.b[c.i] != '\\' {
			c.i++
			continue
		}
		escaped = true
		if c.i+1 < len(c.b) && c.b[c.i+1] != 'u' {
			c.i += 2
			continue
		}
		r := c.hex4(c.i + 2)
		c.i += 6
		switch {
		case r >= 0xDC00 && r < 0xE000: // a low surrogate with no high one before it
			c.badString(where)
			return ""
		case r >= 0xD800 && r < 0xDC00: // a high surrogate must be followed by a low one
			if c.i+1 < len(c.b) && c.b[c.i] == '\\' && c.b[c.i+1] == 'u' {
				if low := c.hex4(c.i + 2); low >= 0xDC00 && low < 0xE000 {
					c.i += 6
					continue
				}
			}
			c.badString(where)
			return ""
		}
	}
	c.i++ // closing quote
	raw := c.b[min(start+1, len(c.b)):min(c.i-1, len(c.b))]
	if !utf8.Valid(raw) {
		c.badString(where)
		return ""
	}
	if !decode {
		return ""
	}
	if !escaped {
		return string(raw)
	}
	var s string
	if err := json.Unmarshal(c.b[start:min(c.i, len(c.b))], &s); err != nil {
		c.err = Errorf(EMALFORMED, "The body is not valid JSON.")
	}
	return s
}

// hex4 is the value of the four hex digits at i, or -1.
func (c *jsonChecker) hex4(i int) int {
	if i+4 > len(c.b) {
		return -1
	}
	n, err := strconv.ParseUint(string(c.b[i:i+4]), 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}

func (c *jsonChecker) badString(where string) {
	if where == "" {
		where = "the top level"
	}
	c.err = Errorf(EMALFORMED, "A string at %s is not valid UTF-8 (raw bytes that are not UTF-8, or an unpaired surrogate escape such as \\ud800); send UTF-8 text.", where)
}
