// `mhctl models …`: the tenant's models. `register` uploads a Hugging Face model directory's
// files (purpose "model": config.json, model.safetensors, tokenizer.json, and its chat template
// files when it has them) and registers them as a custom model in one step.
#include <fmt/format.h>

#include <boost/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "platform/base/time.h"
#include "platform/mhctl/admin_commands.h"

namespace mh::cli {
namespace {

void print_model(const macrohard::Model& m) {
  std::printf("%-28s %-6s %14lld  %8lld  %s\n", m.id.c_str(), m.family.c_str(),
              static_cast<long long>(m.parameters), static_cast<long long>(m.context_length),
              rfc3339(m.created).c_str());
}

}  // namespace

void add_model_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json_out,
                        int* exit_code) {
  auto* models = app.add_subcommand("models", "your tenant's models: register, list, get, delete");
  models->require_subcommand(1);
  struct Args {
    std::string dir, name, id;
  };
  auto a = std::make_shared<Args>();

  auto* reg = models->add_subcommand(
      "register",
      "upload a model directory (config.json, model.safetensors, tokenizer.json, and "
      "tokenizer_config.json and chat_template.jinja when there) and register it as a custom "
      "model");
  reg->add_option("dir", a->dir, "the model directory")->required()->check(CLI::ExistingDirectory);
  reg->add_option("--name", a->name, "its name (the model's id is custom:<name>)")->required();
  reg->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      std::string ids[3];
      const char* names[] = {"config.json", "model.safetensors", "tokenizer.json"};
      for (const char* name : names) {  // all three, before anything is uploaded
        if (!std::filesystem::is_regular_file(std::filesystem::path(a->dir) / name)) {
          std::fprintf(stderr, "mhctl: %s has no %s\n", a->dir.c_str(), name);
          return 2;
        }
      }
      for (int i = 0; i < 3; ++i) {
        ids[i] = c.upload_file((std::filesystem::path(a->dir) / names[i]).string(), "model").id;
      }
      // The chat template's files, when the directory has them, go in the request's "files"
      // beside the three the SDK's register call names.
      boost::json::object files{{names[0], ids[0]}, {names[1], ids[1]}, {names[2], ids[2]}};
      bool extra = false;
      for (const char* name : {"tokenizer_config.json", "chat_template.jinja"}) {
        const auto path = std::filesystem::path(a->dir) / name;
        if (!std::filesystem::is_regular_file(path)) continue;
        files[name] = c.upload_file(path.string(), "model").id;
        extra = true;
      }
      macrohard::Model m;
      if (extra) {
        c.request_json("POST", "/v1/models",
                       boost::json::serialize(boost::json::object{{"name", a->name},
                                                                  {"files", files}}));
        m = c.get_model("custom:" + a->name);
      } else {
        m = c.register_model(a->name, ids[0], ids[1], ids[2]);
      }
      if (*json_out) {
        std::printf("%s\n", m.raw.json().c_str());
      } else {
        std::printf("registered %s: %s, %lld parameters, context %lld\n", m.id.c_str(),
                    m.family.c_str(), static_cast<long long>(m.parameters),
                    static_cast<long long>(m.context_length));
      }
      return 0;
    });
  });

  auto* list = models->add_subcommand("list", "list models");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      if (!*json_out) {
        std::printf("%-28s %-6s %14s  %8s  %s\n", "ID", "FAMILY", "PARAMETERS", "CONTEXT",
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
