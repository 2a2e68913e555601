// `mhctl models …`: the tenant's models. `upload` (or `register`) sends a Hugging Face model
// directory as published (its config, tokenizer, weights or shards and index, chat template and
// generation settings) and registers it as a custom model in one step, with progress.
#include <fmt/format.h>

#include <boost/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "platform/base/time.h"
#include "platform/mhctl/admin_commands.h"
#include "platform/mhctl/progress.h"

namespace mh::cli {
namespace {

void print_model(const macrohard::Model& m) {
  std::printf("%-28s %-11s %14lld  %8lld  %s\n", m.id.c_str(), m.family.c_str(),
              static_cast<long long>(m.parameters), static_cast<long long>(m.context_length),
              rfc3339(m.created).c_str());
}

}  // namespace

void add_model_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json_out,
                        int* exit_code) {
  auto* models = app.add_subcommand("models", "your tenant's models: upload, list, get, delete");
  models->require_subcommand(1);
  struct Args {
    std::string dir, name, id;
    std::string progress = "auto";
  };
  auto a = std::make_shared<Args>();

  auto* upload = models->add_subcommand(
      "upload",
      "upload a model directory as published (config.json, tokenizer.json, model.safetensors or "
      "model.safetensors.index.json and its shards, and tokenizer_config.json, "
      "chat_template.jinja and generation_config.json when there) and register it as a custom "
      "model");
  upload->alias("register");
  upload->add_option("dir", a->dir, "the model directory")->required()->check(CLI::ExistingDirectory);
  upload->add_option("--name", a->name, "its name (the model's id is custom:<name>)")->required();
  add_progress_option(upload, a->progress);
  upload->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      macrohard::Model m;
      try {
        ProgressBar bar(a->name, progress_wanted(a->progress));
        m = c.upload_model(a->dir, a->name, bar.callback());
      } catch (const macrohard::Error& e) {
        // The directory was found wanting before anything was sent: a usage error.
        if (e.http_status() != 0 || e.code() != macrohard::Code::invalid_argument) throw;
        std::fprintf(stderr, "mhctl: %s\n", e.what());
        return 2;
      }
      if (*json_out) {
        std::printf("%s\n", m.raw.json().c_str());
      } else {
        std::printf("registered %s: %s, %lld parameters, context %lld\n", m.id.c_str(),
                    m.family.c_str(), static_cast<long long>(m.parameters),
                    static_cast<long long>(m.context_length));
        // Said, not silently skipped: what of the directory is not part of a model here.
        std::string left;
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(a->dir, ec)) {
          const std::string name = e.path().filename().string();
          if (!e.is_regular_file() || m.raw.has(("files." + name).c_str())) continue;
          left += (left.empty() ? "" : ", ") + name;
        }
        if (!left.empty()) std::printf("not part of the model, left behind: %s\n", left.c_str());
      }
      return 0;
    });
  });

  auto* list = models->add_subcommand("list", "list models");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      if (!*json_out) {
        std::printf("%-28s %-11s %14s  %8s  %s\n", "ID", "FAMILY", "PARAMETERS", "CONTEXT",
                    "CREATED");
      }
      for_each_item([&](const std::string& after) { return c.list_models(after, 100); },
                    [&](const macrohard::Model& item) {
                      if (*json_out) {
                        std::printf("%s\n", item.raw.json().c_str());
                      } else {
                        print_model(item);
                      }
                    });
      return 0;
    });
  });

  auto* get = models->add_subcommand("get", "show one model");
  get->add_option("id", a->id, "the model's id")->required();
  get->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client().get_model(a->id).raw.json().c_str());
      return 0;
    });
  });

  auto* remove = models->add_subcommand("delete", "delete a model (its files stay)");
  remove->add_option("id", a->id, "the model's id")->required();
  remove->callback([=] {
    *exit_code = guarded([&] {
      client().delete_model(a->id);
      std::printf("deleted %s\n", a->id.c_str());
      return 0;
    });
  });
}

}  // namespace mh::cli
