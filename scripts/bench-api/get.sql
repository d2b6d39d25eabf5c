-- The query the API runs for GET /v1/invoices/{id} (api/postgres FindInvoice).
\set pk random(1, :maxpk)
SELECT i.pk, i.id, i.number, i.status, i.currency, i.customer_name, i.customer_email,
	i.subtotal, i.tax, i.total, i.amount_paid, to_char(i.due_date, 'YYYY-MM-DD'), i.memo, i.metadata, i.version,
	i.created_at, i.updated_at, i.finalized_at, i.paid_at, i.voided_at,
	coalesce((SELECT json_agg(json_build_object('description', l.description, 'quantity', l.quantity::text,
		'unit_amount', l.unit_amount, 'tax_rate', l.tax_rate::text, 'amount', l.amount, 'tax_amount', l.tax_amount)
		ORDER BY l.position) FROM line_items l WHERE l.invoice_pk = i.pk), '[]')
FROM invoices i WHERE i.pk = :pk;
