// mh-worker logits / greedy: the model's logits after each of some token ids, and the greedy
// continuation of a prompt (what the reference comparisons read).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "platform/engine/model.h"
#include "platform/worker/cli.h"
#include "platform/worker/tools.h"

namespace mh::worker {

namespace {

// The model, and the ids checked against its vocabulary and context.
std::unique_ptr<engine::Model> load_for(const std::string& dir, const std::vector<int32_t>& ids,
                                        LazyBackend& backend) {
  auto model = need(engine::Model::load(dir, backend.get()));
  for (int32_t id : ids) {
    if (id >= model->config().vocab_size)
      fail(invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary"));
  }
  if (ids.empty()) fail(invalid_argument("no token ids given"));
  if (static_cast<int64_t>(ids.size()) > model->config().max_positions) {
    fail(invalid_argument("more token ids than the model's context"));
  }
  return model;
}

}  // namespace

Tool add_logits(CLI::App& app, LazyBackend& backend) {
  struct Options {
    std::string model, ids;
    bool last = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("logits", "print the logits after each of the token ids");
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("ids", o->ids, "token ids")->required();
  cmd->add_flag("--last", o->last, "only the last position's logits");
  return {cmd, [o, &backend] {
            const auto ids = parse_ids(o->ids);
            auto model = load_for(o->model, ids, backend);
            model->forward(ids, 1, static_cast<int64_t>(ids.size()), {});
            const engine::Tensor l = model->logits();
            const int64_t v = model->config().vocab_size;
            for (int64_t r = o->last ? l.dim(0) - 1 : 0; r < l.dim(0); ++r) {
              std::string line = "[";
              for (int64_t j = 0; j < v; ++j)
                line += (j ? ", " : "") + fmt::format("{:.6g}", l[r * v + j]);
              std::puts((line + "]").c_str());
            }
            return 0;
          }};
}

Tool add_greedy(CLI::App& app, LazyBackend& backend) {
  struct Options {
    std::string model, ids;
    int64_t max_tokens = 16;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("greedy", "print the greedy continuation's token ids");
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("ids", o->ids, "prompt token ids")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "tokens to generate");
  return {cmd, [o, &backend] {
            const auto ids = parse_ids(o->ids);
            auto model = load_for(o->model, ids, backend);
            engine::KvCache cache =
                model->new_cache(static_cast<int64_t>(ids.size()) + o->max_tokens);
            std::vector<engine::Model::Step> steps = {{&cache, ids}};
            std::vector<int32_t> out;
            for (int64_t i = 0;
                 i < o->max_tokens && cache.length() < model->config().max_positions; ++i) {
              const engine::Tensor l = model->forward_cached(steps);
              const auto next = static_cast<int32_t>(
                  std::max_element(l.data(), l.data() + l.numel()) - l.data());
              out.push_back(next);
              steps[0].tokens = {next};
            }
            print_ids(out);
            return 0;
          }};
}

}  // namespace mh::worker
