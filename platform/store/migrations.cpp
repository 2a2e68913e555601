#include "platform/store/migrations.h"

#include <array>

namespace mh::store {
namespace {

constexpr std::array kMigrations{
    Migration{1, "platform metadata and admin keys", R"sql(
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      -- Platform-admin API keys: only the SHA-256 of a key is stored, never the key.
      CREATE TABLE admin_keys (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        key_hash   TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      );
    )sql"},
    Migration{2, "tenants, licenses, seat leases, audit log", R"sql(
      CREATE TABLE tenants (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      -- Every license ever installed; `active` marks each tenant's current one.
      CREATE TABLE licenses (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL REFERENCES tenants(id),
        key_id        TEXT NOT NULL,
        text          TEXT NOT NULL,
        expires_at    INTEGER NOT NULL,
        installed_at  INTEGER NOT NULL,
        active        INTEGER NOT NULL,
        revoked_at    INTEGER,
        revoke_reason TEXT
      );
      CREATE INDEX licenses_by_tenant ON licenses (tenant_id, active);
      CREATE TABLE leases (
        id          TEXT PRIMARY KEY,
        license_id  TEXT NOT NULL REFERENCES licenses(id),
        instance    TEXT NOT NULL,
        ttl_seconds INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        released_at INTEGER
      );
      CREATE INDEX leases_live ON leases (license_id, released_at, expires_at);
      -- Append-only and hash-chained (licensing/audit_chain.h). The triggers stop any code
      -- path from rewriting history; the chain detects anyone who goes around them.
      CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        subject   TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
      );
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    )sql"},
    Migration{3, "tenant state, limits and API keys", R"sql(
      ALTER TABLE tenants ADD COLUMN suspended_at INTEGER;
      ALTER TABLE tenants ADD COLUMN suspend_reason TEXT;
      ALTER TABLE tenants ADD COLUMN rate_limit_rps REAL NOT NULL DEFAULT 50;
      ALTER TABLE tenants ADD COLUMN rate_limit_burst INTEGER NOT NULL DEFAULT 100;
      ALTER TABLE tenants ADD COLUMN storage_limit_bytes INTEGER NOT NULL DEFAULT 10737418240;
      -- Tenants' API keys: only the SHA-256 of a key is stored, never the key.
      CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        tenant_id  TEXT NOT NULL REFERENCES tenants(id),
        name       TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('owner', 'developer', 'viewer')),
        key_hash   TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at INTEGER
      );
      CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);
    )sql"},
    Migration{4, "usage ledger", R"sql(
      -- What each tenant used, appended by producers (jobs, replicas, files), never changed.
      CREATE TABLE usage_records (
        seq          INTEGER PRIMARY KEY,
        tenant_id    TEXT NOT NULL REFERENCES tenants(id),
        at           INTEGER NOT NULL,
        dimension    TEXT NOT NULL CHECK (dimension IN
                       ('gpu_seconds', 'input_tokens', 'output_tokens', 'stored_bytes')),
        quantity     REAL NOT NULL,
        subject_kind TEXT NOT NULL,
        subject_id   TEXT NOT NULL
      );
      CREATE INDEX usage_by_tenant_time ON usage_records (tenant_id, at);
      CREATE TRIGGER usage_no_update BEFORE UPDATE ON usage_records
        BEGIN SELECT RAISE(ABORT, 'the usage ledger is append-only'); END;
      CREATE TRIGGER usage_no_delete BEFORE DELETE ON usage_records
        BEGIN SELECT RAISE(ABORT, 'the usage ledger is append-only'); END;
    )sql"},
    Migration{5, "files", R"sql(
      -- Tenants' uploaded files; their bytes are blobs, shared when the content is the same.
      CREATE TABLE files (
        id         TEXT PRIMARY KEY,
        tenant_id  TEXT NOT NULL REFERENCES tenants(id),
        purpose    TEXT NOT NULL,
        filename   TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX files_by_tenant ON files (tenant_id, purpose);
      CREATE INDEX files_by_blob ON files (sha256);
    )sql"},
    Migration{6, "models, fine-tuning jobs and their events", R"sql(
      -- A tenant's models: custom ones registered from its uploaded files (which stay while the
      -- model exists), and fine-tuned ones made by its jobs. `directory` is where workers load
      -- it from.
      CREATE TABLE models (
        id             TEXT NOT NULL,
        tenant_id      TEXT NOT NULL REFERENCES tenants(id),
        kind           TEXT NOT NULL,
        family         TEXT NOT NULL,
        parameters     INTEGER NOT NULL,
        context_length INTEGER NOT NULL,
        vocab_size     INTEGER NOT NULL,
        config_file    TEXT REFERENCES files(id),
        weights_file   TEXT REFERENCES files(id),
        tokenizer_file TEXT REFERENCES files(id),
        directory      TEXT NOT NULL,
        job_id         TEXT,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
      );
      CREATE TABLE fine_tuning_jobs (
        id               TEXT PRIMARY KEY,
        tenant_id        TEXT NOT NULL REFERENCES tenants(id),
        model            TEXT NOT NULL,
        training_file    TEXT NOT NULL REFERENCES files(id),
        validation_file  TEXT REFERENCES files(id),
        suffix           TEXT,
        status           TEXT NOT NULL,
        error_code       TEXT,
        error_message    TEXT,
        fine_tuned_model TEXT,
        n_epochs         INTEGER NOT NULL,
        batch_size       INTEGER NOT NULL,
        lr_multiplier    REAL NOT NULL,
        seed             INTEGER NOT NULL,
        trained_tokens   INTEGER,
        worker_pid       INTEGER,
        created_at       INTEGER NOT NULL,
        finished_at      INTEGER
      );
      CREATE INDEX jobs_by_status ON fine_tuning_jobs (status, created_at);
      CREATE TABLE fine_tuning_events (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        job_id     TEXT NOT NULL REFERENCES fine_tuning_jobs(id),
        tenant_id  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        level      TEXT NOT NULL,
        message    TEXT NOT NULL,
        type       TEXT NOT NULL,
        data       TEXT
      );
      CREATE INDEX events_by_job ON fine_tuning_events (job_id, seq);
    )sql"},
    Migration{7, "deployments, fine-tuning checkpoints, tenant quotas", R"sql(
      -- The checkpoints a fine-tuning job wrote, with the training loss when each was taken
      -- and the validation loss there (when the job has a validation file).
      CREATE TABLE fine_tuning_checkpoints (
        id         TEXT PRIMARY KEY,
        job_id     TEXT NOT NULL REFERENCES fine_tuning_jobs(id),
        tenant_id  TEXT NOT NULL,
        step       INTEGER NOT NULL,
        train_loss REAL,
        valid_loss REAL,
        path       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (job_id, step)
      );
      -- Macrohard's own job fields: where it runs, on how many devices, how often it
      -- checkpoints, how often a failed worker is retried (from its last checkpoint), and its
      -- priority among its tenant's jobs.
      ALTER TABLE fine_tuning_jobs ADD COLUMN pool TEXT NOT NULL DEFAULT 'default';
      ALTER TABLE fine_tuning_jobs ADD COLUMN gpus INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE fine_tuning_jobs ADD COLUMN checkpoint_interval INTEGER NOT NULL DEFAULT 50;
      ALTER TABLE fine_tuning_jobs ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE fine_tuning_jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE fine_tuning_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
      -- Where a running job's worker is ("pid:<n>", "slurm:<id>"), replacing worker_pid.
      ALTER TABLE fine_tuning_jobs ADD COLUMN worker_ref TEXT;
      -- Deployments: a model served by `replicas` replicas on `pool`; a tenant's, or (tenant_id
      -- NULL) one staff run for every tenant. The replicas themselves are processes, started
      -- again from this row when the daemon starts.
      CREATE TABLE deployments (
        id                  TEXT PRIMARY KEY,
        tenant_id           TEXT REFERENCES tenants(id),
        model               TEXT NOT NULL,
        pool                TEXT NOT NULL,
        replicas            INTEGER NOT NULL,
        devices_per_replica INTEGER NOT NULL,
        status              TEXT NOT NULL,
        error               TEXT,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL
      );
      CREATE INDEX deployments_by_tenant ON deployments (tenant_id, model);
      -- Pools staff added through the API (those in the configuration are not stored).
      CREATE TABLE pools (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL
      );
      -- Staff's quotas: per tenant per pool, devices guaranteed (nominal), borrowable beyond
      -- that, and the weight of its share of borrowed capacity. No row: nothing guaranteed.
      CREATE TABLE tenant_quotas (
        tenant_id       TEXT NOT NULL REFERENCES tenants(id),
        pool            TEXT NOT NULL,
        nominal         INTEGER NOT NULL,
        borrowing_limit INTEGER NOT NULL,
        weight          REAL NOT NULL,
        PRIMARY KEY (tenant_id, pool)
      );
    )sql"},
    Migration{8, "a custom model's optional files", R"sql(
      -- The files beyond config.json, the weights and tokenizer.json that a custom model was
      -- registered with (tokenizer_config.json, chat_template.jinja), as a JSON object of
      -- file name -> file id; NULL when none.
      ALTER TABLE models ADD COLUMN extra_files TEXT;
    )sql"},
    Migration{9, "fine-tuning jobs keep the bytes they train on", R"sql(
      -- A job keeps its files' bytes (their blobs, by SHA-256) while it may still run, so a
      -- tenant can delete a file a job used: the file goes, the bytes stay until no file and no
      -- unfinished job needs them. The file ids stay as the job was created with, no longer
      -- foreign keys (the file may be gone).
      CREATE TABLE fine_tuning_jobs_v9 (
        id                  TEXT PRIMARY KEY,
        tenant_id           TEXT NOT NULL REFERENCES tenants(id),
        model               TEXT NOT NULL,
        training_file       TEXT NOT NULL,
        validation_file     TEXT,
        suffix              TEXT,
        status              TEXT NOT NULL,
        error_code          TEXT,
        error_message       TEXT,
        fine_tuned_model    TEXT,
        n_epochs            INTEGER NOT NULL,
        batch_size          INTEGER NOT NULL,
        lr_multiplier       REAL NOT NULL,
        seed                INTEGER NOT NULL,
        trained_tokens      INTEGER,
        worker_pid          INTEGER,
        created_at          INTEGER NOT NULL,
        finished_at         INTEGER,
        pool                TEXT NOT NULL DEFAULT 'default',
        gpus                INTEGER NOT NULL DEFAULT 1,
        checkpoint_interval INTEGER NOT NULL DEFAULT 50,
        max_retries         INTEGER NOT NULL DEFAULT 0,
        attempts            INTEGER NOT NULL DEFAULT 0,
        priority            INTEGER NOT NULL DEFAULT 0,
        worker_ref          TEXT,
        training_sha256     TEXT NOT NULL,
        validation_sha256   TEXT
      );
      INSERT INTO fine_tuning_jobs_v9
        SELECT j.id, j.tenant_id, j.model, j.training_file, j.validation_file, j.suffix, j.status,
               j.error_code, j.error_message, j.fine_tuned_model, j.n_epochs, j.batch_size,
               j.lr_multiplier, j.seed, j.trained_tokens, j.worker_pid, j.created_at,
               j.finished_at, j.pool, j.gpus, j.checkpoint_interval, j.max_retries, j.attempts,
               j.priority, j.worker_ref,
               (SELECT f.sha256 FROM files f WHERE f.id = j.training_file),
               (SELECT f.sha256 FROM files f WHERE f.id = j.validation_file)
        FROM fine_tuning_jobs j;
      DROP TABLE fine_tuning_jobs;
      ALTER TABLE fine_tuning_jobs_v9 RENAME TO fine_tuning_jobs;
      CREATE INDEX jobs_by_status ON fine_tuning_jobs (status, created_at);
    )sql", true},
    Migration{10, "usage accrued but not yet recorded", R"sql(
      -- What a running job or replica has used since its producer last recorded it in
      -- usage_records, rewritten every second; recording clears it, and the next daemon records
      -- what a killed one left here.
      CREATE TABLE usage_accrued (
        tenant_id    TEXT NOT NULL REFERENCES tenants(id),
        dimension    TEXT NOT NULL,
        subject_kind TEXT NOT NULL,
        subject_id   TEXT NOT NULL,
        quantity     REAL NOT NULL,
        at           INTEGER NOT NULL,
        seen         REAL NOT NULL,  -- when accrued, Unix seconds to the millisecond
        PRIMARY KEY (tenant_id, dimension, subject_kind, subject_id)
      );
    )sql"},
    Migration{11, "training methods, LoRA jobs and adapters as models", R"sql(
      -- OpenAI's method.type ('supervised', 'dpo') and DPO's beta.
      ALTER TABLE fine_tuning_jobs ADD COLUMN method TEXT NOT NULL DEFAULT 'supervised';
      ALTER TABLE fine_tuning_jobs ADD COLUMN beta REAL;
      -- A LoRA job's settings (JSON: rank, alpha, dropout, target_modules); NULL: a full
      -- fine-tune.
      ALTER TABLE fine_tuning_jobs ADD COLUMN lora TEXT;
      -- An adapter's base model (the model its weights apply to); NULL for a full model.
      ALTER TABLE models ADD COLUMN base TEXT;
      -- A merged model's adapter (the adapter folded into its base).
      ALTER TABLE models ADD COLUMN merged_from TEXT;
    )sql"},
};

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

}  // namespace mh::store
