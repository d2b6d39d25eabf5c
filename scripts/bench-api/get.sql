-- The query the API runs for GET /v1/invoices/{id} (api/postgres FindInvoice:
-- invoiceColumns + invoiceFrom), by key.
\set pk random(1, :maxpk)
SELECT i.pk, i.id, i.number, i.status, i.currency, i.customer_name, i.customer_email,
	i.subtotal, i.tax, i.total, i.amount_paid, to_char(i.due_date, 'YYYY-MM-DD'), i.memo, i.metadata, i.version,
	i.created_at, i.updated_at, i.finalized_at, i.paid_at, i.voided_at,
	li.d, li.q, li.u, li.r, li.a, li.t
FROM invoices i CROSS JOIN LATERAL (
	SELECT array_agg(l.description ORDER BY l.position) d, array_agg(l.quantity::text ORDER BY l.position) q,
		array_agg(l.unit_amount ORDER BY l.position) u, array_agg(l.tax_rate::text ORDER BY l.position) r,
		array_agg(l.amount ORDER BY l.position) a, array_agg(l.tax_amount ORDER BY l.position) t
	FROM line_items l WHERE l.invoice_pk = i.pk) li WHERE i.pk = :pk;
