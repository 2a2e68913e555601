// `mhctl admin …`: platform staff's commands against a running daemon (admin key required).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <macrohard/macrohard.hpp>
#include <string>

namespace mh::cli {

// Adds `admin license install|list|show|revoke` and `admin audit verify|list`. `client` makes
// the SDK client from mhctl's global options; `*exit_code` is set by the command that runs.
void add_admin_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json,
                        int* exit_code);

// Adds `files upload|list|get|download|delete`: uploads and downloads stream, with a progress
// bar on a terminal.
void add_file_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json,
                       int* exit_code);

// Adds `models register|list|get|delete`; register uploads a model directory's files first.
void add_model_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json,
                        int* exit_code);

// Adds `jobs create|list|get|events|wait|cancel`: fine-tuning jobs, followed live.
void add_job_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json,
                      int* exit_code);

// Adds `deployments create|list|get|scale|wait|delete`, and `chat` and `complete`, which
// stream a deployed model's answer.
void add_deployment_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json,
                             int* exit_code);

// Calls fn(item) for every item of a list, following its pages: fetch(after) returns the page
// after the item `after` ("" for the first).
template <typename Fetch, typename Fn>
void for_each_item(Fetch fetch, Fn fn) {
  std::string after;
  for (;;) {
    auto page = fetch(after);
    for (const auto& item : page.items) fn(item);
    if (!page.has_more) return;
    after = page.last_id;
  }
}

// Runs a command's body, turning an SDK error into exit code 1 and a message on stderr.
int guarded(const std::function<int()>& fn);

// Adds `keys list|create|revoke`: a tenant owner's own keys.
void add_key_commands(CLI::App& app, std::function<macrohard::Client()> client, int* exit_code);

}  // namespace mh::cli
