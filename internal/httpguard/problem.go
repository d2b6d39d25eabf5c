package httpguard

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ProblemTypeBase prefixes a problem's code in its type URI (as the
// invoicing API's problems do).
const ProblemTypeBase = "urn:invdeploy:problem:"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

func problemBody(status int, code, detail string) []byte {
	b, _ := json.Marshal(Problem{Type: ProblemTypeBase + code, Title: http.StatusText(status), Status: status, Detail: detail, Code: code})
	return b
}

// WriteProblem answers status as application/problem+json with code and
// detail; retryAfter > 0 adds Retry-After (seconds). A problem of a
// request whose body was not read to its end closes the connection.
func WriteProblem(w http.ResponseWriter, status int, code, detail string, retryAfter int) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_, _ = w.Write(problemBody(status, code, detail))
}

// problemResponse is a whole HTTP/1.1 response carrying a problem, for a
// connection answered before any server reads it.
func problemResponse(status int, code, detail string, retryAfter int) []byte {
	body := problemBody(status, code, detail)
	s := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: application/problem+json\r\nCache-Control: no-store\r\nConnection: close\r\n" +
		"Retry-After: " + strconv.Itoa(retryAfter) + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(s), body...)
}
