-- Every catalog event the workers applied or refused: item history and event status read from here.
CREATE TABLE catalog_events (
    event_id     text PRIMARY KEY,
    batch_id     text NOT NULL,
    city         text NOT NULL,
    type         text NOT NULL,
    subject      text NOT NULL,
    actor        text NOT NULL,
    request_id   text,
    status       text NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason       text,
    version      integer,
    position     bigint NOT NULL,
    seq_in_batch integer NOT NULL,
    occurred_at  timestamptz NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    old_value    jsonb,
    new_value    jsonb
);

CREATE INDEX catalog_events_subject ON catalog_events (city, subject, position, seq_in_batch);
