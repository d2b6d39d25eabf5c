package http

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/invdeploy/invdeploy/api"
)

func handleWelcome(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("Welcome to the Invoicing API!"))
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, api.Errorf(api.ENOTFOUND, "No route for %s %s.", r.Method, r.URL.Path))
}

func (s *Server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	// RFC 9110 15.5.6: a 405 lists the methods the resource does support.
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.Routes != nil {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			if rc.Routes.Match(chi.NewRouteContext(), m, r.URL.Path) {
				w.Header().Add("Allow", m)
				if m == http.MethodGet {
					w.Header().Add("Allow", http.MethodHead)
				}
			}
		}
	}
	s.writeError(w, r, api.Errorf(api.EMETHOD, "%s is not allowed on %s.", r.Method, r.URL.Path))
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, jsonMediaTypes, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := api.ParseInvoiceInput(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := writeOptions(r, in, http.StatusCreated)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.svc.CreateInvoice(r.Context(), in, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out.Replay == nil {
		s.metrics.created.Inc()
	}
	writeOutcome(w, http.StatusCreated, out)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	f, err := api.ParseListFilter(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.svc.ListInvoices(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writePage(w, page)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	inv, err := s.svc.FindInvoice(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	etag := api.ETag(inv.Version)
	if inm := r.Header.Get("If-None-Match"); inm != "" && noneMatch(inm, etag) {
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeInvoice(w, http.StatusOK, inv)
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, patchMediaTypes, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := api.ParseInvoicePatch(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := writeOptions(r, p, http.StatusOK)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.svc.UpdateInvoice(r.Context(), chi.URLParam(r, "id"), p, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeOutcome(w, http.StatusOK, out)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	opts, err := writeOptions(r, nil, http.StatusNoContent)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.svc.DeleteInvoice(r.Context(), chi.URLParam(r, "id"), opts); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// action runs one state transition whose body is empty or {}; after sees
// the invoice once the transition is committed (not on a replay).
func (s *Server) action(do func(ctx context.Context, id string, opts api.WriteOptions) (api.Outcome, error), after func(*api.Invoice)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r, jsonMediaTypes, false)
		if err == nil {
			err = api.ParseEmptyBody(body)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		opts, err := writeOptions(r, nil, http.StatusOK)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out, err := do(r.Context(), chi.URLParam(r, "id"), opts)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if after != nil && out.Replay == nil && out.Invoice != nil {
			after(out.Invoice)
		}
		writeOutcome(w, http.StatusOK, out)
	}
}

func (s *Server) handleFinalize(w http.ResponseWriter, r *http.Request) {
	s.action(s.svc.FinalizeInvoice, s.metrics.finalizedInvoice)(w, r)
}

func (s *Server) handleVoid(w http.ResponseWriter, r *http.Request) {
	s.action(s.svc.VoidInvoice, func(*api.Invoice) { s.metrics.voided.Inc() })(w, r)
}

func (s *Server) handleMarkUncollectible(w http.ResponseWriter, r *http.Request) {
	s.action(s.svc.MarkUncollectible, func(*api.Invoice) { s.metrics.uncollectible.Inc() })(w, r)
}

func (s *Server) handlePayment(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, jsonMediaTypes, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	amount, err := api.ParsePayment(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := writeOptions(r, amount, http.StatusOK)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.svc.RecordPayment(r.Context(), chi.URLParam(r, "id"), amount, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if out.Replay == nil && out.Invoice != nil {
		s.metrics.payment(out.Invoice, amount)
	}
	writeOutcome(w, http.StatusOK, out)
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	events, err := s.svc.ListEvents(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Data []api.Event `json:"data"`
	}{events})
}
