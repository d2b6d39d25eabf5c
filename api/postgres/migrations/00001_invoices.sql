-- +goose Up
CREATE TABLE invoices (
    pk             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             text        NOT NULL UNIQUE,
    number         text        UNIQUE,
    status         text        NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    customer_name  text        NOT NULL,
    customer_email text,
    subtotal       bigint      NOT NULL CHECK (subtotal >= 0),
    tax            bigint      NOT NULL CHECK (tax >= 0),
    total          bigint      NOT NULL CHECK (total = subtotal + tax),
    amount_paid    bigint      NOT NULL DEFAULT 0 CHECK (amount_paid BETWEEN 0 AND total),
    due_date       date,
    memo           text,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    version        bigint      NOT NULL CHECK (version >= 1),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    finalized_at   timestamptz,
    paid_at        timestamptz,
    voided_at      timestamptz,
    CHECK ((number IS NULL) = (status = 'draft'))
);
CREATE INDEX invoices_status_pk ON invoices (status, pk DESC);
CREATE INDEX invoices_customer_email_pk ON invoices (lower(customer_email), pk DESC);

CREATE TABLE line_items (
    invoice_pk  bigint        NOT NULL REFERENCES invoices (pk) ON DELETE CASCADE,
    position    int           NOT NULL,
    description text          NOT NULL,
    quantity    numeric(18,4) NOT NULL CHECK (quantity > 0),
    unit_amount bigint        NOT NULL CHECK (unit_amount >= 0),
    tax_rate    numeric(7,4)  NOT NULL CHECK (tax_rate BETWEEN 0 AND 100),
    amount      bigint        NOT NULL CHECK (amount >= 0),
    tax_amount  bigint        NOT NULL CHECK (tax_amount >= 0),
    PRIMARY KEY (invoice_pk, position)
);

-- Every state change appends a row in the same transaction: the future
-- webhook outbox.
CREATE TABLE invoice_events (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text        NOT NULL UNIQUE,
    invoice_pk bigint      NOT NULL REFERENCES invoices (pk) ON DELETE CASCADE,
    type       text        NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX invoice_events_invoice ON invoice_events (invoice_pk, seq);

-- One counter row, updated in the finalizing transaction: a rolled-back
-- finalization gives its number back, so numbers have no gaps (a SEQUENCE
-- would leave one).
CREATE TABLE invoice_number_counter (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_number bigint  NOT NULL
);
INSERT INTO invoice_number_counter (last_number) VALUES (0);

-- Stored outcomes of requests sent with an Idempotency-Key, kept 24 hours.
CREATE TABLE idempotency_keys (
    key         text        PRIMARY KEY,
    fingerprint bytea       NOT NULL,
    status      int         NOT NULL,
    body        bytea       NOT NULL,
    etag        text        NOT NULL DEFAULT '',
    location    text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE invoice_number_counter;
DROP TABLE invoice_events;
DROP TABLE line_items;
DROP TABLE invoices;
