// `mhctl deployments …` and `mhctl chat`/`complete`: serve a model and ask it things. `chat`
// streams the answer as it is generated.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "platform/base/time.h"
#include "platform/mhctl/admin_commands.h"

namespace mh::cli {
namespace {

void print_deployment(const macrohard::Deployment& d) {
  std::printf("%-20s %-36s %-9s %lld/%lld  %s\n", d.id.c_str(), d.model.c_str(), d.status.c_str(),
              static_cast<long long>(d.ready_replicas), static_cast<long long>(d.replicas),
              rfc3339(d.created_at).c_str());
}

void show(const macrohard::Deployment& d, bool json) {
  if (json) {
    std::printf("%s\n", d.raw.json().c_str());
    return;
  }
  print_deployment(d);
  if (!d.error.empty()) std::printf("error: %s\n", d.error.c_str());
}

}  // namespace

void add_deployment_commands(CLI::App& app, std::function<macrohard::Client()> client,
                             bool* json_out, int* exit_code) {
  auto* deployments = app.add_subcommand(
      "deployments", "serve models: create [--wait], list, get, scale, wait, delete");
  deployments->require_subcommand(1);
  struct Args {
    std::string model, id, prompt, system, pool;
    int replicas = 1, devices_per_replica = 0;
    bool wait = false;
    int64_t max_tokens = 0;
    double temperature = -1;
    int64_t seed = -1;
  };
  auto a = std::make_shared<Args>();

  auto* create = deployments->add_subcommand("create", "deploy a model");
  create->add_option("model", a->model, "the model's id")->required();
  create->add_option("--replicas", a->replicas, "replicas to run")->check(CLI::Range(1, 64));
  create->add_option("--pool", a->pool, "the pool to serve from (default: default)");
  create
      ->add_option("--devices-per-replica", a->devices_per_replica,
                   "devices each replica holds (default: 1)")
      ->check(CLI::Range(1, 8));
  create->add_flag("--wait", a->wait, "wait until it is ready");
  create->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      macrohard::Deployment d =
          c.create_deployment({a->model, a->replicas, a->pool, a->devices_per_replica});
      if (a->wait) {
        if (!*json_out) std::printf("deployment %s: starting…\n", d.id.c_str());
        d = c.wait_deployment(d.id);
      }
      show(d, *json_out);
      return d.status == "failed" ? 1 : 0;
    });
  });

  auto* list = deployments->add_subcommand("list", "list deployments");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      if (!*json_out) {
        std::printf("%-20s %-36s %-9s %s  %s\n", "ID", "MODEL", "STATUS", "READY", "CREATED");
      }
      for_each_item([&](const std::string& after) { return c.list_deployments(after, 100); },
                    [&](const macrohard::Deployment& d) {
                      if (*json_out) {
                        std::printf("%s\n", d.raw.json().c_str());
                      } else {
                        print_deployment(d);
                      }
                    });
      return 0;
    });
  });

  auto* get = deployments->add_subcommand("get", "show a deployment and its replicas");
  get->add_option("id", a->id, "deployment id")->required();
  get->callback([=] {
    *exit_code = guarded([&] {
      show(client().get_deployment(a->id), *json_out);
      return 0;
    });
  });

  auto* scale = deployments->add_subcommand("scale", "set a deployment's replica count");
  scale->add_option("id", a->id, "deployment id")->required();
  scale->add_option("replicas", a->replicas, "replicas (0 stops them all)")
      ->required()
      ->check(CLI::Range(0, 64));
  scale->callback([=] {
    *exit_code = guarded([&] {
      show(client().scale_deployment(a->id, a->replicas), *json_out);
      return 0;
    });
  });

  auto* wait = deployments->add_subcommand("wait", "wait until a deployment is ready");
  wait->add_option("id", a->id, "deployment id")->required();
  wait->callback([=] {
    *exit_code = guarded([&] {
      const macrohard::Deployment d = client().wait_deployment(a->id);
      show(d, *json_out);
      return d.status == "ready" ? 0 : 1;
    });
  });

  auto* remove = deployments->add_subcommand("delete", "stop and delete a deployment");
  remove->add_option("id", a->id, "deployment id")->required();
  remove->callback([=] {
    *exit_code = guarded([&] {
      client().delete_deployment(a->id);
      if (!*json_out) std::printf("deleted %s\n", a->id.c_str());
      return 0;
    });
  });

  // chat / complete: the answer streams to stdout as it is generated.
  for (const bool chat : {true, false}) {
    auto* cmd = chat ? app.add_subcommand("chat", "ask a deployed model, streaming its answer")
                     : app.add_subcommand("complete", "continue a prompt with a deployed model");
    cmd->add_option("model", a->model, "a deployment id or a deployed model")->required();
    cmd->add_option("prompt", a->prompt, "your message (chat) or the text to continue")->required();
    if (chat) cmd->add_option("--system", a->system, "a system message first");
    cmd->add_option("--max-tokens", a->max_tokens, "most tokens to generate");
    cmd->add_option("--temperature", a->temperature, "0 is greedy");
    cmd->add_option("--seed", a->seed, "sampling seed");
    cmd->callback([=] {
      *exit_code = guarded([&] {
        macrohard::CompletionRequest r;
        r.model = a->model;
        r.max_tokens = a->max_tokens;
        r.temperature = a->temperature;
        r.seed = a->seed;
        if (chat) {
          if (!a->system.empty()) r.messages.push_back({"system", a->system});
          r.messages.push_back({"user", a->prompt});
        } else {
          r.prompt = a->prompt;
        }
        auto c = client();
        if (*json_out) {
          const macrohard::Completion done = chat ? c.chat(r) : c.complete(r);
          std::printf("%s\n", done.raw.json().c_str());
          return 0;
        }
        auto print = [](std::string_view text) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
          return true;
        };
        const macrohard::Completion done = chat ? c.chat(r, print) : c.complete(r, print);
        std::printf("\n");
        std::fprintf(stderr, "[%s: %lld prompt + %lld generated tokens]\n",
                     done.finish_reason.c_str(), static_cast<long long>(done.prompt_tokens),
                     static_cast<long long>(done.completion_tokens));
        return 0;
      });
    });
  }
}

}  // namespace mh::cli
