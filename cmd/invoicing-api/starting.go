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

// get is the real service, or nil and the error to answer while starting.
func (s *startingService) get() (api.InvoiceService, error) {
	if p := s.svc.Load(); p != nil {
		return *p, nil
	}
	return nil, api.Errorf(api.EUNAVAILABLE, "The server is starting: its database is not ready yet. Retry in a moment.")
}

func (s *startingService) CreateInvoice(ctx context.Context, in *api.InvoiceInput, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.CreateInvoice(ctx, in, o)
}

func (s *startingService) FindInvoice(ctx context.Context, id string) (*api.Invoice, error) {
	svc, err := s.get()
	if err != nil {
		return nil, err
	}
	return svc.FindInvoice(ctx, id)
}

func (s *startingService) ListInvoices(ctx context.Context, f api.ListFilter) (*api.InvoicePage, error) {
	svc, err := s.get()
	if err != nil {
		return nil, err
	}
	return svc.ListInvoices(ctx, f)
}

func (s *startingService) UpdateInvoice(ctx context.Context, id string, p *api.InvoicePatch, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.UpdateInvoice(ctx, id, p, o)
}

func (s *startingService) DeleteInvoice(ctx context.Context, id string, o api.WriteOptions) error {
	svc, err := s.get()
	if err != nil {
		return err
	}
	return svc.DeleteInvoice(ctx, id, o)
}

func (s *startingService) FinalizeInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.FinalizeInvoice(ctx, id, o)
}

func (s *startingService) RecordPayment(ctx context.Context, id string, amount int64, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.RecordPayment(ctx, id, amount, o)
}

func (s *startingService) VoidInvoice(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.VoidInvoice(ctx, id, o)
}

func (s *startingService) MarkUncollectible(ctx context.Context, id string, o api.WriteOptions) (api.Outcome, error) {
	svc, err := s.get()
	if err != nil {
		return api.Outcome{}, err
	}
	return svc.MarkUncollectible(ctx, id, o)
}

func (s *startingService) ListEvents(ctx context.Context, id string) ([]api.Event, error) {
	svc, err := s.get()
	if err != nil {
		return nil, err
	}
	return svc.ListEvents(ctx, id)
}

func (s *startingService) Ready(ctx context.Context) error {
	svc, err := s.get()
	if err != nil {
		return err
	}
	return svc.Ready(ctx)
}
