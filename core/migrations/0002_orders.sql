-- Orders: one row per order however often its command is delivered, and every status it went through.
CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    customer        text NOT NULL,
    idempotency_key text NOT NULL,
    city            text NOT NULL,
    restaurant_id   text NOT NULL,
    lines           jsonb NOT NULL,
    status          text NOT NULL,
    reason          text,
    current_prices  jsonb,
    price_versions  jsonb,
    total_cents     bigint NOT NULL,
    currency        text NOT NULL,
    version         integer NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (customer, idempotency_key)
);

CREATE TABLE order_status_history (
    order_id   text NOT NULL REFERENCES orders (order_id),
    version    integer NOT NULL,
    status     text NOT NULL,
    reason     text,
    actor      text NOT NULL,
    command_id text UNIQUE,
    at         timestamptz NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE INDEX orders_by_customer ON orders (customer, created_at);
