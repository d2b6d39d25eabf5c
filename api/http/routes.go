package http

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes lists every endpoint of the API in one place.
func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	// HEAD is answered wherever GET is (RFC 9110 9.3.2): the GET handler
	// runs and net/http drops the body.
	r.Use(s.observe, s.recoverPanics, middleware.GetHead)
	r.NotFound(s.handleNotFound)
	r.MethodNotAllowed(s.handleMethodNotAllowed)

	r.Get("/", handleWelcome)
	r.Get("/healthz", handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	r.Get("/openapi.json", handleOpenAPI)

	r.Post("/v1/invoices", s.handleCreate)
	r.Get("/v1/invoices", s.handleList)
	r.Get("/v1/invoices/{id}", s.handleGet)
	r.Patch("/v1/invoices/{id}", s.handleUpdate)
	r.Delete("/v1/invoices/{id}", s.handleDelete)
	r.Post("/v1/invoices/{id}/finalize", s.handleFinalize)
	r.Post("/v1/invoices/{id}/payments", s.handlePayment)
	r.Post("/v1/invoices/{id}/void", s.handleVoid)
	r.Post("/v1/invoices/{id}/mark_uncollectible", s.handleMarkUncollectible)
	r.Get("/v1/invoices/{id}/events", s.handleEvents)
	return r
}
