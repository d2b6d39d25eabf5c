package main

import (
	"context"
	"sync/atomic"

	"github.com/invdeploy/invdeploy/api"
)

// startingService is the API's service while the server waits for its
// database and migrates it: the port is already open, /healthz answers 200,
// /readyz and every invoice route 503 service_unavailable; once set, it
// hands every call to the real store.
type startingService struct {
	svc atomic.Pointer[api.InvoiceService]
}

func (s *startingService) set(svc api.InvoiceService) { s.svc.Store(&svc) }

// with calls f on the real service, or answers 503 while starting.
func with[T any](s *startingService, f func(api.InvoiceService) (T, error)) (T, error) {
	p := s.svc.Load()
	if p == nil {
		var zero T
		return zero, api.Errorf(api.EUNAVAILABLE, "The server is starting: its database is not ready yet. Retry in a moment.")
	}
	return f(*p)
}

type none struct{}

func (s *startingService) CreateInvoice(ctx context.Context, in *api.InvoiceInput, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.CreateInvoice(ctx, in, o) })
}

func (s *startingService) FindInvoice(ctx context.Context, id string) (*api.Invoice, error) {
	return with(s, func(v api.InvoiceService) (*api.Invoice, error) { return v.FindInvoice(ctx, id) })
}

func (s *startingService) ListInvoices(ctx context.Context, f api.ListFilter) (*api.InvoicePage, error) {
	return with(s, func(v api.InvoiceService) (*api.InvoicePage, error) { return v.ListInvoices(ctx, f) })
}

func (s *startingService) UpdateInvoice(ctx context.Context, id string, p *api.InvoicePatch, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.UpdateInvoice(ctx, id, p, o) })
}

func (s *startingService) DeleteInvoice(ctx context.Context, id string, o api.WriteOptions) error {
	_, err := with(s, func(v api.InvoiceService) (none, error) { return none{}, v.DeleteInvoice(ctx, id, o) })
	return err
}

func (s *startingService) FinalizeInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.FinalizeInvoice(ctx, id, o) })
}

func (s *startingService) RecordPayment(ctx context.Context, id string, amount int64, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.RecordPayment(ctx, id, amount, o) })
}

func (s *startingService) VoidInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.VoidInvoice(ctx, id, o) })
}

func (s *startingService) MarkUncollectible(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	return with(s, func(v api.InvoiceService) (api.Outcome, error) { return v.MarkUncollectible(ctx, id, o) })
}

func (s *startingService) ListEvents(ctx context.Context, id string) ([]api.Event, error) {
	return with(s, func(v api.InvoiceService) ([]api.Event, error) { return v.ListEvents(ctx, id) })
}

func (s *startingService) Ready(ctx context.Context) error {
	_, err := with(s, func(v api.InvoiceService) (none, error) { return none{}, v.Ready(ctx) })
	return err
}
