-- fairserve fleet usage, version 1. Applied by `fairctl db migrate`, never by
-- hand: {{prefix}} stands for ledger.sink.table_prefix (default fairserve_).

-- One row per (ledger, commit window, minute, tenant, model, version,
-- status). A replica's ledger numbers its windows and never reuses a number,
-- so a re-sent window hits the primary key and is skipped: usage is counted
-- exactly once however often a window is shipped.
CREATE TABLE {{prefix}}usage (
  ledger_id     TEXT        NOT NULL,
  window_id     BIGINT      NOT NULL,
  bucket_start  TIMESTAMPTZ NOT NULL,
  tenant_id     TEXT        NOT NULL,
  model_name    TEXT        NOT NULL,
  model_version TEXT        NOT NULL,
  status        TEXT        NOT NULL,
  replica       TEXT        NOT NULL,
  requests      BIGINT      NOT NULL CHECK (requests >= 0),
  samples       BIGINT      NOT NULL CHECK (samples >= 0),
  compute_ns    BIGINT      NOT NULL CHECK (compute_ns >= 0),
  committed_at  TIMESTAMPTZ NOT NULL,
  shipped_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (ledger_id, window_id, bucket_start, tenant_id, model_name, model_version, status)
);

-- Invoices and usage reads: one tenant over a period, or everyone over a period.
CREATE INDEX {{prefix}}usage_by_tenant ON {{prefix}}usage (tenant_id, bucket_start);
CREATE INDEX {{prefix}}usage_by_time ON {{prefix}}usage (bucket_start);

-- One row per replica ledger: how far it has shipped.
CREATE TABLE {{prefix}}ledgers (
  ledger_id    TEXT        PRIMARY KEY,
  replica      TEXT        NOT NULL,
  last_window  BIGINT      NOT NULL,
  first_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_shipped TIMESTAMPTZ NOT NULL DEFAULT now()
);
