/* macrohard.h: the C ABI of libmacrohard, the Macrohard SDK.
 *
 * Everything a licensee's program calls. Conventions, throughout:
 *  - Objects are opaque and come in _new/_delete pairs; the caller owns what it creates and what
 *    an out-parameter hands back, and frees it with the matching _delete (strings: mh_free).
 *  - Functions that can fail return mh_error*: NULL means success; otherwise the caller owns
 *    the error and frees it with mh_error_delete. Out-parameters are untouched on failure.
 *  - Strings are NUL-terminated UTF-8. Borrowed `const char*` results live as long as the
 *    object they come from.
 *  - A client may be used from several threads at once.
 *  - Options grow through setters, never through struct fields, so old callers keep working.
 *
 * Versioning: MH_API_VERSION_MAJOR/MINOR describe this header. A program works with a library
 * whose major is the same and whose minor is at least the header's: check with
 * mh_api_compatible(MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR) at start.
 */
#ifndef MACROHARD_MACROHARD_H_
#define MACROHARD_MACROHARD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MH_API_VERSION_MAJOR 1
#define MH_API_VERSION_MINOR 7

#if defined(__GNUC__)
#define MH_EXPORT __attribute__((visibility("default")))
#else
#define MH_EXPORT
#endif

/* ---- versions ---------------------------------------------------------------------------- */

/* The library's API version: (major << 16) | minor. */
MH_EXPORT uint32_t mh_api_version(void);
/* 1 if a program built against header version major.minor can use this library, else 0. */
MH_EXPORT int mh_api_compatible(uint32_t major, uint32_t minor);
/* The library's release version, "0.1.0". Static storage. */
MH_EXPORT const char* mh_library_version(void);

/* ---- errors ------------------------------------------------------------------------------ */

/* Error codes. The values never change; new ones may be added. */
typedef enum mh_code {
  MH_OK = 0,
  MH_ERR_INVALID_ARGUMENT = 1,    /* the request is malformed or a field is invalid (400) */
  MH_ERR_UNAUTHENTICATED = 2,     /* no API key, or one the server does not know (401) */
  MH_ERR_PERMISSION_DENIED = 3,   /* license, feature or role forbids it (403) */
  MH_ERR_NOT_FOUND = 4,           /* no such resource (404) */
  MH_ERR_CONFLICT = 5,            /* conflicts with the resource's state (409) */
  MH_ERR_PAYLOAD_TOO_LARGE = 6,   /* over a size limit (413) */
  MH_ERR_FAILED_PRECONDITION = 7, /* well-formed, but refused (422) */
  MH_ERR_RESOURCE_EXHAUSTED = 8,  /* quota or rate limit (429) */
  MH_ERR_UNAVAILABLE = 9,         /* the server cannot be reached or is not ready (503) */
  MH_ERR_DEADLINE_EXCEEDED = 10,  /* a timeout */
  MH_ERR_INTERNAL = 11,           /* a bug or an environment failure (500) */
  MH_ERR_METHOD_NOT_ALLOWED = 12, /* (405) */
  MH_ERR_UNIMPLEMENTED = 13,      /* (501) */
  MH_ERR_CANCELLED = 14           /* the operation was cancelled */
} mh_code;

typedef struct mh_error mh_error;

MH_EXPORT mh_code mh_error_code(const mh_error* error);
/* The HTTP status the server answered with, or 0 when the error arose in the client. */
MH_EXPORT int mh_error_http_status(const mh_error* error);
/* What went wrong and, where possible, what to do about it. Never NULL. */
MH_EXPORT const char* mh_error_message(const mh_error* error);
/* The server's x-request-id for the failed request ("" when there was none): quote it to
 * platform staff. */
MH_EXPORT const char* mh_error_request_id(const mh_error* error);
/* The request field the error is about ("" when none). */
MH_EXPORT const char* mh_error_param(const mh_error* error);
/* The code's stable name, "not_found". Static storage. */
MH_EXPORT const char* mh_code_name(mh_code code);
MH_EXPORT void mh_error_delete(mh_error* error);

/* Frees a string the library handed to the caller. */
MH_EXPORT void mh_free(void* pointer);

/* ---- client options ---------------------------------------------------------------------- */

typedef struct mh_client_options mh_client_options;

MH_EXPORT mh_client_options* mh_client_options_new(void);
MH_EXPORT void mh_client_options_delete(mh_client_options* options);
/* "http://127.0.0.1:8080" or "https://macrohard.example.com". Required. */
MH_EXPORT mh_error* mh_client_options_set_base_url(mh_client_options* options, const char* url);
/* The API key sent as "Authorization: Bearer <key>". */
MH_EXPORT mh_error* mh_client_options_set_api_key(mh_client_options* options, const char* key);
/* A PEM file of CA certificates to trust, in addition to the system's. */
MH_EXPORT mh_error* mh_client_options_set_ca_file(mh_client_options* options, const char* path);
/* 1 (the default) verifies the server's certificate and host name; 0 skips it (development). */
MH_EXPORT mh_error* mh_client_options_set_verify_tls(mh_client_options* options, int verify);
/* Connect timeout, default 10000 ms. */
MH_EXPORT mh_error* mh_client_options_set_connect_timeout_ms(mh_client_options* options,
                                                             int64_t ms);
/* Timeout of one attempt of one request, default 60000 ms. */
MH_EXPORT mh_error* mh_client_options_set_request_timeout_ms(mh_client_options* options,
                                                             int64_t ms);
/* Retries after the first attempt, default 3. Safe requests (GET, HEAD, PUT, DELETE) are retried
 * on network failures; every request is retried on 429 and 503, after the server's Retry-After
 * when it sends one, else after an exponential backoff with full jitter. */
MH_EXPORT mh_error* mh_client_options_set_max_retries(mh_client_options* options, int retries);
/* The first backoff delay, default 200 ms; each retry doubles it, up to max_backoff. */
MH_EXPORT mh_error* mh_client_options_set_initial_backoff_ms(mh_client_options* options,
                                                             int64_t ms);
/* The largest backoff delay, and the most a Retry-After is honoured for, default 30000 ms. */
MH_EXPORT mh_error* mh_client_options_set_max_backoff_ms(mh_client_options* options, int64_t ms);
/* Appended to the User-Agent header: "myproduct/2.1". */
MH_EXPORT mh_error* mh_client_options_set_user_agent(mh_client_options* options,
                                                     const char* product);

/* A license for the client (since 1.1). mh_client_new verifies it offline, against the trusted
 * keys, and fails with the reason before any network I/O. The client then holds a seat of the
 * license: it checks one out before its first request, renews it in the background, and
 * releases it in mh_client_delete. */
MH_EXPORT mh_error* mh_client_options_set_license(mh_client_options* options,
                                                  const char* license_text);
/* Trusts a license-signing public key (the text of a .pub file), in addition to any built into
 * the library. Since 1.1. */
MH_EXPORT mh_error* mh_client_options_add_trusted_key(mh_client_options* options,
                                                      const char* public_key_text);
/* How this instance names itself in its seat lease; default "<hostname>/<pid>". Since 1.1. */
MH_EXPORT mh_error* mh_client_options_set_instance_name(mh_client_options* options,
                                                        const char* name);

/* ---- licenses (since 1.1) ---------------------------------------------------------------- */

typedef struct mh_license mh_license;

/* Verifies a license file offline: its signature against the keys built into the library plus
 * `public_keys` (texts of .pub files, may be NULL when count is 0), then that it is in force at
 * `now` (Unix seconds; 0 means the current time). The error says which check failed: not a
 * license, unknown key, altered or forged, key retired, not yet valid, expired. */
MH_EXPORT mh_error* mh_license_verify(const char* license_text, const char* const* public_keys,
                                      size_t public_key_count, int64_t now, mh_license** out);
MH_EXPORT const char* mh_license_id(const mh_license* license);
MH_EXPORT const char* mh_license_licensee(const mh_license* license);
MH_EXPORT const char* mh_license_tenant(const mh_license* license);
MH_EXPORT const char* mh_license_key_id(const mh_license* license);
/* "valid" or "in its grace period" (verified licenses are never expired or not yet valid). */
MH_EXPORT const char* mh_license_status(const mh_license* license);
MH_EXPORT int64_t mh_license_issued_at(const mh_license* license);
MH_EXPORT int64_t mh_license_not_before(const mh_license* license);
MH_EXPORT int64_t mh_license_expires_at(const mh_license* license);
MH_EXPORT int64_t mh_license_grace_seconds(const mh_license* license);
MH_EXPORT int mh_license_has_feature(const mh_license* license, const char* feature);
MH_EXPORT size_t mh_license_feature_count(const mh_license* license);
MH_EXPORT const char* mh_license_feature(const mh_license* license, size_t index);
/* A limit by name: "max_gpus", "gpu_hours_per_month", "max_deployments", "max_model_params",
 * "seats". -1 for a name this library does not know. */
MH_EXPORT int64_t mh_license_limit(const mh_license* license, const char* name);
/* Pools the license allows; none listed means every pool. */
MH_EXPORT size_t mh_license_pool_count(const mh_license* license);
MH_EXPORT const char* mh_license_pool(const mh_license* license, size_t index);
MH_EXPORT void mh_license_delete(mh_license* license);

/* ---- client ------------------------------------------------------------------------------ */

typedef struct mh_client mh_client;

/* Creates a client; the options are copied and may be deleted afterwards. No network I/O; with
 * a license set, the license is verified here, offline. */
MH_EXPORT mh_error* mh_client_new(const mh_client_options* options, mh_client** out);
/* Releases the client's seat lease, if it holds one, then frees the client. */
MH_EXPORT void mh_client_delete(mh_client* client);
/* The client's verified license, or NULL when none was set. Borrowed from the client. Since 1.1. */
MH_EXPORT const mh_license* mh_client_license(const mh_client* client);
/* The id of the seat lease the client holds now ("" when none). Since 1.1. */
MH_EXPORT const char* mh_client_seat_lease_id(mh_client* client);

/* GET /v1/version. */
typedef struct mh_server_info mh_server_info;
MH_EXPORT mh_error* mh_client_server_info(mh_client* client, mh_server_info** out);
MH_EXPORT const char* mh_server_info_version(const mh_server_info* info);
MH_EXPORT size_t mh_server_info_api_version_count(const mh_server_info* info);
MH_EXPORT const char* mh_server_info_api_version(const mh_server_info* info, size_t index);
/* 1 if this library can talk to the server (it serves the API version this library speaks). */
MH_EXPORT int mh_server_info_compatible(const mh_server_info* info);
MH_EXPORT void mh_server_info_delete(mh_server_info* info);

/* GET /healthz and /readyz. Fails only when the server cannot be reached at all. */
typedef struct mh_health mh_health;
MH_EXPORT mh_error* mh_client_health(mh_client* client, mh_health** out);
MH_EXPORT int mh_health_live(const mh_health* health);
MH_EXPORT int mh_health_ready(const mh_health* health);
/* Why the server is not ready, "" when it is. */
MH_EXPORT const char* mh_health_detail(const mh_health* health);
MH_EXPORT void mh_health_delete(mh_health* health);

/* A JSON request to any API path, for endpoints newer than this library's typed calls.
 * `method` is "GET", "POST", …; `path` starts with "/" ("/v1/admin/status"); `body_json` may be
 * NULL. On success *response_json is the response body (free it with mh_free); an HTTP error
 * status becomes an mh_error carrying the server's code, message and request id. */
MH_EXPORT mh_error* mh_client_request_json(mh_client* client, const char* method, const char* path,
                                           const char* body_json, char** response_json);

/* ---- resources (since 1.2) --------------------------------------------------------------- */

/* One resource as the server describes it: a file, an API key, a tenant, a usage report. Read
 * its fields by name; a dotted name reaches into nested objects ("limits.storage_limit_bytes")
 * and arrays ("choices.0.text"), and a key that holds dots itself is matched whole
 * ("files.config.json").
 * New fields may appear in later server versions; none is removed within API major 1. */
typedef struct mh_object mh_object;
/* The field's text; "" when it is absent, null or not a string. Borrowed from the object. */
MH_EXPORT const char* mh_object_string(const mh_object* object, const char* field);
/* The field as an integer; 0 when it is absent or not a number. */
MH_EXPORT int64_t mh_object_int(const mh_object* object, const char* field);
/* The field as a number; 0 when it is absent or not a number. */
MH_EXPORT double mh_object_number(const mh_object* object, const char* field);
/* 1 if the field is true, else 0. */
MH_EXPORT int mh_object_bool(const mh_object* object, const char* field);
/* 1 if the field is present and not null. */
MH_EXPORT int mh_object_has(const mh_object* object, const char* field);
/* The whole object as JSON text. Borrowed from the object. */
MH_EXPORT const char* mh_object_json(const mh_object* object);
MH_EXPORT void mh_object_delete(mh_object* object);

/* One page of a list, in the order the server keeps (oldest first). */
typedef struct mh_list mh_list;
MH_EXPORT size_t mh_list_count(const mh_list* list);
/* The item at `index`, or NULL past the end. Borrowed from the list. */
MH_EXPORT const mh_object* mh_list_item(const mh_list* list, size_t index);
/* 1 if more items follow this page: ask again with after = mh_list_last_id(list). */
MH_EXPORT int mh_list_has_more(const mh_list* list);
MH_EXPORT const char* mh_list_last_id(const mh_list* list);
/* The whole response the page came in (a usage report's totals and period, for instance).
 * Borrowed from the list. */
MH_EXPORT const mh_object* mh_list_response(const mh_list* list);
MH_EXPORT void mh_list_delete(mh_list* list);

/* Called as a transfer moves: bytes done and the total (0 when unknown). Return 0 to go on,
 * anything else to cancel: the call then fails with MH_ERR_CANCELLED and leaves nothing behind
 * (no file on the server for an upload, no file on disk for a download). */
typedef int (*mh_progress_fn)(void* user_data, uint64_t done, uint64_t total);

/* List calls take `after` (NULL or "" for the first page) and `limit` (0 for the server's
 * default, at most 100). */

/* ---- files (since 1.2): POST/GET/DELETE /v1/files, OpenAI-compatible ---------------------- */

/* Uploads a file from disk, streamed in constant memory. `purpose` is "fine-tune" (JSONL,
 * checked line by line on the server; an error names the line) or "model" (weights, config,
 * tokenizer files). The request is sent with "Expect: 100-continue", so a refusal (a bad key,
 * the per-file limit, the storage quota) arrives before the content is sent. `progress` may be
 * NULL. On success *out is the file (id, filename, purpose, bytes, created_at, sha256). */
MH_EXPORT mh_error* mh_client_upload_file(mh_client* client, const char* path, const char* purpose,
                                          mh_progress_fn progress, void* user_data,
                                          mh_object** out);
/* The tenant's files; `purpose` NULL or "" for all. */
MH_EXPORT mh_error* mh_client_list_files(mh_client* client, const char* purpose, const char* after,
                                         int limit, mh_list** out);
MH_EXPORT mh_error* mh_client_get_file(mh_client* client, const char* file_id, mh_object** out);
/* Downloads a file's content to `destination_path`, written under a temporary name beside it
 * and renamed into place once complete (replacing any file there). */
MH_EXPORT mh_error* mh_client_download_file(mh_client* client, const char* file_id,
                                            const char* destination_path, mh_progress_fn progress,
                                            void* user_data);
MH_EXPORT mh_error* mh_client_delete_file(mh_client* client, const char* file_id);

/* ---- models (since 1.3): GET/POST/DELETE /v1/models --------------------------------------- */

/* Registers a custom model from three uploaded files (purpose "model"): its config.json,
 * model.safetensors and tokenizer.json. The platform validates them (the config, every tensor
 * against it, the tokenizer, the license's custom_models and max_model_params) before it
 * accepts the model. On success *out is the model (id "custom:<name>", family, parameters,
 * context_length, vocab_size). */
MH_EXPORT mh_error* mh_client_register_model(mh_client* client, const char* name,
                                             const char* config_file_id,
                                             const char* weights_file_id,
                                             const char* tokenizer_file_id, mh_object** out);
/* Registers a custom model from a whole request body (since 1.6): {"name", "files"}, where
 * "files" maps each file's name in the model's directory to an uploaded file's id:
 * config.json, tokenizer.json, model.safetensors or model.safetensors.index.json with every
 * shard it names, and optionally tokenizer_config.json, chat_template.jinja and
 * generation_config.json. */
MH_EXPORT mh_error* mh_client_register_model_json(mh_client* client, const char* request_json,
                                                  mh_object** out);
/* Uploads a model directory as published (since 1.6) and registers it as custom:<name>: the
 * files above that the directory has (others, such as README.md, are not part of a model here
 * and stay behind). The directory is checked before anything is sent (every required file and
 * every shard its index names); `progress` (may be NULL) sees the bytes of all the files
 * together, and returning non-zero cancels. If an upload or the registration fails, the files
 * uploaded so far are deleted again. On success *out is the model. */
MH_EXPORT mh_error* mh_client_upload_model(mh_client* client, const char* directory,
                                           const char* name, mh_progress_fn progress,
                                           void* user_data, mh_object** out);
MH_EXPORT mh_error* mh_client_list_models(mh_client* client, const char* after, int limit,
                                          mh_list** out);
MH_EXPORT mh_error* mh_client_get_model(mh_client* client, const char* model_id, mh_object** out);
MH_EXPORT mh_error* mh_client_delete_model(mh_client* client, const char* model_id);

/* ---- fine-tuning jobs (since 1.3): /v1/fine_tuning/jobs, OpenAI-compatible ---------------- */

/* Starts a job training `model` (one of the tenant's) on `training_file` (purpose "fine-tune").
 * `validation_file` and `suffix` may be NULL; n_epochs, batch_size and learning_rate_multiplier
 * 0 mean "auto"; a negative seed lets the server choose. On success *out is the job. */
MH_EXPORT mh_error* mh_client_create_fine_tuning_job(
    mh_client* client, const char* model, const char* training_file, const char* validation_file,
    const char* suffix, int n_epochs, int batch_size, double learning_rate_multiplier, int64_t seed,
    mh_object** out);
/* Starts a job from a whole request body (since 1.5): OpenAI's fields as above, plus where and how
 * it runs: "pool" (default "default"), "gpus" (data-parallel ranks on one node; more than 1 needs
 * the license feature multi_gpu), "priority", "checkpoint_interval" and "max_retries" (see the
 * API reference). Since 1.7 the server also takes OpenAI's "method" (supervised, or dpo with its
 * beta, on a file of preference pairs) and Macrohard's LoRA settings in "method.lora". `request_json` must be a JSON object; the server checks every field and names
 * a bad one in mh_error_param. On success *out is the job. */
MH_EXPORT mh_error* mh_client_create_fine_tuning_job_json(mh_client* client,
                                                          const char* request_json,
                                                          mh_object** out);
MH_EXPORT mh_error* mh_client_list_fine_tuning_jobs(mh_client* client, const char* after, int limit,
                                                    mh_list** out);
MH_EXPORT mh_error* mh_client_get_fine_tuning_job(mh_client* client, const char* job_id,
                                                  mh_object** out);
MH_EXPORT mh_error* mh_client_cancel_fine_tuning_job(mh_client* client, const char* job_id,
                                                     mh_object** out);
/* A job's events, oldest first. */
MH_EXPORT mh_error* mh_client_list_fine_tuning_events(mh_client* client, const char* job_id,
                                                      const char* after, int limit, mh_list** out);
/* Called with each new event of a job being waited on. Return 0 to go on waiting, anything
 * else to stop waiting (the job goes on; the wait fails with MH_ERR_CANCELLED). */
typedef int (*mh_event_fn)(void* user_data, const mh_object* event);
/* Waits until the job has succeeded, failed or been cancelled, passing each of its events to
 * `on_event` (may be NULL) as it is recorded: the library follows the job's server-sent event
 * stream, and opens it again from the last event seen if it is cut (a restart, a long quiet
 * wait), after `poll_interval_ms` (0: 500). On success *out is the finished job; a failed job
 * is a success of the wait (read its status). */
MH_EXPORT mh_error* mh_client_wait_fine_tuning_job(mh_client* client, const char* job_id,
                                                   mh_event_fn on_event, void* user_data,
                                                   int poll_interval_ms, mh_object** out);

/* ---- deployments (since 1.4): /v1/deployments ---------------------------------------------- */

/* Deploys `model` (one of the tenant's, or a deployment-ready base model) on `replicas` replicas
 * (0: 1) of the default pool. The license must grant `deploy`, and max_deployments, max_gpus and
 * gpu_hours_per_month must leave room. On success *out is the deployment (id "dep-…", status
 * "starting"; replica_status lists each replica's state, restarts and counters). */
MH_EXPORT mh_error* mh_client_create_deployment(mh_client* client, const char* model, int replicas,
                                                mh_object** out);
/* Deploys from a whole request body (since 1.5): {"model", "replicas", "pool",
 * "devices_per_replica"}; more than one device per replica needs the license feature multi_gpu.
 * On success *out is the deployment. */
MH_EXPORT mh_error* mh_client_create_deployment_json(mh_client* client, const char* request_json,
                                                     mh_object** out);
MH_EXPORT mh_error* mh_client_list_deployments(mh_client* client, const char* after, int limit,
                                               mh_list** out);
MH_EXPORT mh_error* mh_client_get_deployment(mh_client* client, const char* deployment_id,
                                             mh_object** out);
/* Sets the replica count (0 stops every replica and keeps the deployment). */
MH_EXPORT mh_error* mh_client_scale_deployment(mh_client* client, const char* deployment_id,
                                               int replicas, mh_object** out);
MH_EXPORT mh_error* mh_client_delete_deployment(mh_client* client, const char* deployment_id);
/* Waits until the deployment is "ready" (or "failed", or "stopped"), at most `timeout_ms`
 * (0: 10 minutes; MH_ERR_DEADLINE_EXCEEDED after it). *out is the deployment as it stands. */
MH_EXPORT mh_error* mh_client_wait_deployment(mh_client* client, const char* deployment_id,
                                              int timeout_ms, mh_object** out);

/* ---- completions (since 1.4): /v1/chat/completions and /v1/completions, OpenAI-compatible -- */

/* Called with each piece of generated text as it streams in (UTF-8, not NUL-terminated).
 * Return 0 to go on, anything else to stop: the request is cancelled on the replica and the
 * call fails with MH_ERR_CANCELLED. */
typedef int (*mh_text_fn)(void* user_data, const char* text, size_t length);
/* A chat completion. `request_json` is OpenAI's request body ({"model": a deployment id or a
 * deployed model, "messages": [...], "max_tokens", "temperature", "top_p", "stop", "seed", …}).
 * With `on_text` NULL the answer comes whole; otherwise it streams (the library asks for
 * server-sent events with usage) and `on_text` sees each piece. Either way *out is a
 * "chat.completion" object: choices.0.message.content, choices.0.finish_reason, usage. */
MH_EXPORT mh_error* mh_client_chat_completion(mh_client* client, const char* request_json,
                                              mh_text_fn on_text, void* user_data, mh_object** out);
/* A text completion ({"model", "prompt", …}), likewise; *out is a "text_completion" object
 * (choices.0.text). */
MH_EXPORT mh_error* mh_client_completion(mh_client* client, const char* request_json,
                                         mh_text_fn on_text, void* user_data, mh_object** out);

/* ---- the caller's tenant, keys and usage (since 1.2) --------------------------------------- */

/* GET /v1/tenant: the tenant of the client's key, its limits, license state, and the key's own
 * id and role. */
MH_EXPORT mh_error* mh_client_get_tenant(mh_client* client, mh_object** out);
/* Makes an API key (owner keys only). `role` is "owner", "developer" or "viewer" (NULL:
 * developer). The new key's secret is in the field "key": shown this once, never again. */
MH_EXPORT mh_error* mh_client_create_key(mh_client* client, const char* name, const char* role,
                                         mh_object** out);
MH_EXPORT mh_error* mh_client_list_keys(mh_client* client, const char* after, int limit,
                                        mh_list** out);
/* Revokes a key at once. `out` may be NULL; otherwise it receives the revoked key. */
MH_EXPORT mh_error* mh_client_revoke_key(mh_client* client, const char* key_id, mh_object** out);

/* GET /v1/usage: the tenant's usage from start_time to end_time (Unix seconds; 0 and 0 mean the
 * last 30 days), in buckets of `bucket_width` ("1h", "1d" or "total"; NULL: "1d"), per subject
 * (job, replica, file) when `group_by` is "subject", for one `dimension` ("gpu_seconds",
 * "input_tokens", "output_tokens", "stored_bytes"; NULL: all). Items are the lines (start_time,
 * end_time, dimension, quantity, records[, subject_kind, subject_id]); mh_list_response holds
 * the period and the totals ("totals.gpu_seconds"). */
MH_EXPORT mh_error* mh_client_get_usage(mh_client* client, int64_t start_time, int64_t end_time,
                                        const char* bucket_width, const char* group_by,
                                        const char* dimension, mh_list** out);

/* ---- platform staff (admin key; since 1.2) ------------------------------------------------- */

/* Limits passed as numbers: a negative value leaves that limit as it is (or at the platform's
 * default, for a new tenant). */
MH_EXPORT mh_error* mh_client_admin_create_tenant(mh_client* client, const char* tenant_id,
                                                  const char* name, mh_object** out);
MH_EXPORT mh_error* mh_client_admin_list_tenants(mh_client* client, const char* after, int limit,
                                                 mh_list** out);
MH_EXPORT mh_error* mh_client_admin_get_tenant(mh_client* client, const char* tenant_id,
                                               mh_object** out);
/* Suspension refuses every request of the tenant's keys at once; `reason` may be NULL. */
MH_EXPORT mh_error* mh_client_admin_suspend_tenant(mh_client* client, const char* tenant_id,
                                                   const char* reason, mh_object** out);
MH_EXPORT mh_error* mh_client_admin_resume_tenant(mh_client* client, const char* tenant_id,
                                                  mh_object** out);
MH_EXPORT mh_error* mh_client_admin_set_tenant_limits(mh_client* client, const char* tenant_id,
                                                      double rate_limit_rps,
                                                      int64_t rate_limit_burst,
                                                      int64_t storage_limit_bytes, mh_object** out);
/* A key for a tenant (its first owner key, typically); `role` NULL means owner. The secret is
 * in the field "key". */
MH_EXPORT mh_error* mh_client_admin_create_tenant_key(mh_client* client, const char* tenant_id,
                                                      const char* name, const char* role,
                                                      mh_object** out);
/* Usage records as CSV, for one tenant (NULL: all) from start_time to end_time (0, 0: the last
 * 30 days). *csv is freed with mh_free. */
MH_EXPORT mh_error* mh_client_admin_export_usage(mh_client* client, const char* tenant_id,
                                                 int64_t start_time, int64_t end_time, char** csv);

#ifdef __cplusplus
}
#endif

#endif /* MACROHARD_MACROHARD_H_ */
