// Package enginestream decodes the Docker Engine API's JSON progress streams
// (build, pull, push, load) in one place, including the BuildKit status the
// engine wraps in them, so every caller reads errors the same way.
package enginestream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/pkg/jsonmessage"
	controlapi "github.com/moby/buildkit/api/services/control"
)

// Message is one message of an engine progress stream.
type Message = jsonmessage.JSONMessage

// Decode reads the stream r and calls fn for every message. A message that
// carries an error ends the stream: Decode returns it (as *jsonmessage.JSONError
// when the engine sent a code). An error from fn is returned as is.
func Decode(r io.Reader, fn func(*Message) error) error {
	dec := json.NewDecoder(r)
	for {
		var m Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read engine progress: %w", err)
		}
		if m.Error != nil && m.Error.Message != "" {
			return m.Error
		}
		//lint:ignore SA1019 an engine may send only the older "error" field
		if msg := m.ErrorMessage; msg != "" {
			return errors.New(msg)
		}
		if fn != nil {
			if err := fn(&m); err != nil {
				return err
			}
		}
	}
}

// TraceID is the ID of the messages whose aux field is a BuildKit status.
const TraceID = "moby.buildkit.trace"

// Trace returns the BuildKit status in m: the engine sends BuildKit's
// progress as aux messages with ID moby.buildkit.trace holding a base64 (a
// JSON string) protobuf StatusResponse of BuildKit's control API. ok is false
// for any other message.
func Trace(m *Message) (st *controlapi.StatusResponse, ok bool, err error) {
	if m.ID != TraceID || m.Aux == nil {
		return nil, false, nil
	}
	var raw []byte // a JSON string decodes from base64 into []byte
	if err := json.Unmarshal(*m.Aux, &raw); err != nil {
		return nil, true, fmt.Errorf("decode BuildKit status: %w", err)
	}
	st = &controlapi.StatusResponse{}
	if err := st.UnmarshalVT(raw); err != nil {
		return nil, true, fmt.Errorf("decode BuildKit status: %w", err)
	}
	return st, true, nil
}
