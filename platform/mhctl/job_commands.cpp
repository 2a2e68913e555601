// `mhctl jobs …`: fine-tuning jobs. `create --wait` and `wait` follow a job to its end with a
// live progress line (step, loss) on a terminal and its messages as they come.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "platform/base/time.h"
#include "platform/mhctl/admin_commands.h"

namespace mh::cli {
namespace {

void print_job(const macrohard::FineTuningJob& j) {
  std::printf("%-30s %-10s %-28s %s\n", j.id.c_str(), j.status.c_str(), j.model.c_str(),
              j.fine_tuned_model.c_str());
}

// Follows a job to its end: metrics redraw one line on a terminal (or print every tenth step
// elsewhere); messages print as they come. Returns 0 if it succeeded, 1 otherwise.
int follow(macrohard::Client& c, const std::string& id, bool json_out) {
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  bool line_open = false;
  auto job = c.wait_fine_tuning_job(id, [&](const macrohard::JobEvent& e) {
    if (json_out) return true;
    if (e.type == "metrics") {
      if (tty) {
        std::fprintf(stderr, "\r  step %lld/%lld  loss %.4f   ", static_cast<long long>(e.step),
                     static_cast<long long>(e.total_steps), e.train_loss);
        line_open = true;
      } else if (e.step % 10 == 0 || e.step == e.total_steps) {
        std::fprintf(stderr, "  step %lld/%lld  loss %.4f\n", static_cast<long long>(e.step),
                     static_cast<long long>(e.total_steps), e.train_loss);
      }
      return true;
    }
    if (line_open) std::fputc('\n', stderr);
    line_open = false;
    std::fprintf(stderr, "%s\n", e.message.c_str());
    return true;
  });
  if (line_open) std::fputc('\n', stderr);
  if (json_out) {
    std::printf("%s\n", job.raw.json().c_str());
  } else if (job.status == "succeeded") {
    std::printf("%s succeeded: %s\n", job.id.c_str(), job.fine_tuned_model.c_str());
  } else {
    std::printf("%s %s%s%s\n", job.id.c_str(), job.status.c_str(),
                job.error_message.empty() ? "" : ": ", job.error_message.c_str());
  }
  return job.status == "succeeded" ? 0 : 1;
}

}  // namespace

void add_job_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json_out,
                      int* exit_code) {
  auto* jobs =
      app.add_subcommand("jobs", "fine-tuning jobs: create, list, get, events, wait, cancel");
  jobs->require_subcommand(1);
  struct Args {
    macrohard::FineTuningRequest request;
    std::string id;
    bool wait = false;
  };
  auto a = std::make_shared<Args>();

  auto* create = jobs->add_subcommand("create", "start a fine-tuning job");
  create->add_option("--model", a->request.model, "one of your models")->required();
  create->add_option("--training-file", a->request.training_file, "a fine-tune file's id")
      ->required();
  create->add_option("--validation-file", a->request.validation_file, "a fine-tune file's id");
  create->add_option("--suffix", a->request.suffix, "part of the new model's name");
  create->add_option("--epochs", a->request.n_epochs, "passes over the data (0: auto)");
  create->add_option("--batch-size", a->request.batch_size, "rows per step (0: auto)");
  create->add_option("--lr-multiplier", a->request.learning_rate_multiplier,
                     "learning rate multiplier (0: auto)");
  create->add_option("--seed", a->request.seed, "seed (default: the server's choice)");
  create->add_option("--pool", a->request.pool, "the pool to train on (default: default)");
  create
      ->add_option("--gpus", a->request.gpus,
                   "data-parallel ranks, one per device, on one node (default: 1)")
      ->check(CLI::Range(1, 64));
  create
      ->add_option("--priority", a->request.priority,
                   "-100 to 100: your higher-priority jobs go first and are preempted last")
      ->check(CLI::Range(-100, 100));
  create
      ->add_option("--checkpoint-interval", a->request.checkpoint_interval,
                   "steps between checkpoints (default: 50)")
      ->check(CLI::PositiveNumber);
  create
      ->add_option("--max-retries", a->request.max_retries,
                   "times to restart it from its last checkpoint after a failure (default: 0)")
      ->check(CLI::Range(0, 10));
  create->add_option("--method", a->request.method,
                     "supervised (the default), or dpo: the training file holds preference pairs")
      ->check(CLI::IsMember({"supervised", "dpo"}));
  create->add_option("--beta", a->request.beta, "DPO's beta (default: 0.1)");
  create
      ->add_option("--lora-rank", a->request.lora_rank,
                   "train LoRA adapters of this rank on the frozen model; the result is an "
                   "adapter")
      ->check(CLI::Range(1, 256));
  create->add_option("--lora-alpha", a->request.lora_alpha, "LoRA alpha (default: twice the rank)");
  create->add_option("--lora-dropout", a->request.lora_dropout, "LoRA dropout (default: 0)");
  create->add_option("--lora-targets", a->request.lora_targets,
                     "modules to adapt, e.g. q_proj v_proj (default: every linear layer)");
  create->add_flag("--wait", a->wait, "follow the job to its end");
  create->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      const auto job = c.create_fine_tuning_job(a->request);
      if (!a->wait) {
        if (*json_out) {
          std::printf("%s\n", job.raw.json().c_str());
        } else {
          std::printf("created %s (%s)\n", job.id.c_str(), job.status.c_str());
        }
        return 0;
      }
      if (!*json_out) std::printf("created %s\n", job.id.c_str());
      return follow(c, job.id, *json_out);
    });
  });

  auto* list = jobs->add_subcommand("list", "list jobs");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      if (!*json_out) std::printf("%-30s %-10s %-28s %s\n", "ID", "STATUS", "MODEL", "RESULT");
      for_each_item([&](const std::string& after) { return c.list_fine_tuning_jobs(after, 100); },
                    [&](const macrohard::FineTuningJob& item) {
                      if (*json_out) {
                        std::printf("%s\n", item.raw.json().c_str());
                      } else {
                        print_job(item);
                      }
                    });
      return 0;
    });
  });

  // `mhctl queue`: the tenant's waiting jobs, where each stands and why it waits.
  auto* queue = app.add_subcommand("queue", "your waiting jobs: position and why each waits");
  queue->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      std::vector<macrohard::FineTuningJob> waiting;
      for_each_item([&](const std::string& after) { return c.list_fine_tuning_jobs(after, 100); },
                    [&](const macrohard::FineTuningJob& item) {
                      if (item.status == "queued") waiting.push_back(item);
                    });
      std::sort(waiting.begin(), waiting.end(),
                [](const auto& x, const auto& y) { return x.queue_position < y.queue_position; });
      if (*json_out) {
        for (const auto& j : waiting) std::printf("%s\n", j.raw.json().c_str());
        return 0;
      }
      if (waiting.empty()) {
        std::printf("no jobs waiting\n");
        return 0;
      }
      std::printf("%-4s %-30s %s\n", "POS", "JOB", "WHY IT WAITS");
      for (const auto& j : waiting) {
        std::printf("%-4lld %-30s %s\n", static_cast<long long>(j.queue_position), j.id.c_str(),
                    j.queue_reason.empty() ? "waiting for the next scheduling pass"
                                           : j.queue_reason.c_str());
      }
      return 0;
    });
  });

  auto* get = jobs->add_subcommand("get", "show one job");
  get->add_option("id", a->id, "the job's id")->required();
  get->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client().get_fine_tuning_job(a->id).raw.json().c_str());
      return 0;
    });
  });

  auto* events = jobs->add_subcommand("events", "a job's events so far");
  events->add_option("id", a->id, "the job's id")->required();
  events->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      for_each_item(
          [&](const std::string& after) { return c.list_fine_tuning_events(a->id, after, 1000); },
          [&](const macrohard::JobEvent& item) {
            std::printf("%s  %-5s %s\n", rfc3339(item.created_at).c_str(), item.level.c_str(),
                        item.message.c_str());
          });
      return 0;
    });
  });

  auto* wait = jobs->add_subcommand("wait", "follow a job to its end");
  wait->add_option("id", a->id, "the job's id")->required();
  wait->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      return follow(c, a->id, *json_out);
    });
  });

  auto* cancel = jobs->add_subcommand("cancel", "cancel a job");
  cancel->add_option("id", a->id, "the job's id")->required();
  cancel->callback([=] {
    *exit_code = guarded([&] {
      const auto job = client().cancel_fine_tuning_job(a->id);
      std::printf("%s %s\n", job.id.c_str(), job.status.c_str());
      return 0;
    });
  });
}

}  // namespace mh::cli
