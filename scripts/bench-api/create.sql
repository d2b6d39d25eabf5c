-- The statement the API runs for POST /v1/invoices (api/postgres createSQL):
-- the invoice, its 3 lines and its created event, one round trip.
\set r random(1, 9000000000000000000)
WITH inv AS (
	INSERT INTO invoices (id, status, currency, customer_name, customer_email, subtotal, tax, total,
		amount_paid, due_date, memo, metadata, version, created_at, updated_at)
	VALUES ('inv_' || :r, 'draft', 'EUR', 'Bench Customer', 'bench@example.com', 17998, 3350, 21348, 0, NULL::date, NULL, '{}', 1, now(), now())
	RETURNING pk
), li AS (
	INSERT INTO line_items (invoice_pk, position, description, quantity, unit_amount, tax_rate, amount, tax_amount)
	SELECT inv.pk, l.ord, l.d, l.q::numeric, l.u, l.r::numeric, l.a, l.t
	FROM inv, unnest('{Consulting,Travel,Book}'::text[], '{1.5,3,1}'::text[], '{10000,333,1999}'::bigint[], '{20,20,7.5}'::text[], '{15000,999,1999}'::bigint[], '{3000,200,150}'::bigint[])
		WITH ORDINALITY AS l(d, q, u, r, a, t, ord)
)
INSERT INTO invoice_events (id, invoice_pk, type, version, created_at)
SELECT 'evt_' || :r, inv.pk, 'invoice.created', 1, now() FROM inv;
