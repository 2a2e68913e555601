// finetune_and_deploy: train a model on your data, deploy it, and ask it something, through the
// Macrohard SDK.
//
//   MH_URL=http://127.0.0.1:8080 MH_API_KEY=mh_live_… ./finetune_and_deploy [options] DATA…
//
// DATA is a JSONL training file ({"text": …}, {"prompt": …, "completion": …} or
// {"messages": […]} per line), or one or more plain-text files of entries separated by lines
// holding only "%" (the fortune(6) format), which are turned into {"text": …} lines first.
//
//   --model M       the model to start from (default mh-gpt2-tiny, a preset that trains from
//                   scratch: its tokenizer is learned from DATA)
//   --epochs N      passes over the data (default 3)
//   --lr-multiplier X  (default 3; presets train from scratch and like a higher rate)
//   --prompt TEXT   what to ask the deployed model (default "The ")
//   --keep          leave the deployment running (default: delete it at the end)
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <macrohard/macrohard.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string env(const char* name, const char* fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// A fortune-format file (entries between lines of "%") appended to `dst` as JSONL of
// {"text": …}; the number of entries written.
size_t fortunes_to_jsonl(const std::filesystem::path& in, std::ofstream& dst) {
  std::ifstream src(in);
  std::string line, entry;
  size_t n = 0;
  auto flush = [&] {
    while (!entry.empty() && (entry.back() == '\n' || entry.back() == ' ')) entry.pop_back();
    if (!entry.empty()) {
      dst << "{\"text\":" << json_string(entry) << "}\n";
      ++n;
    }
    entry.clear();
  };
  while (std::getline(src, line)) {
    if (line == "%") {
      flush();
    } else {
      entry += line + "\n";
    }
  }
  flush();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (!macrohard::api_compatible()) {
    std::fprintf(stderr, "libmacrohard %s is too old for this program\n",
                 macrohard::library_version().c_str());
    return 2;
  }
  std::string model = "mh-gpt2-tiny", prompt = "The ";
  std::vector<std::string> data;
  int epochs = 3;
  double lr_multiplier = 3;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--model") {
      model = value();
    } else if (arg == "--epochs") {
      epochs = std::atoi(value().c_str());
    } else if (arg == "--lr-multiplier") {
      lr_multiplier = std::atof(value().c_str());
    } else if (arg == "--prompt") {
      prompt = value();
    } else if (arg == "--keep") {
      keep = true;
    } else if (!arg.starts_with("--")) {
      data.push_back(arg);
    } else {
      std::fprintf(stderr, "usage: %s [--model M] [--epochs N] [--prompt TEXT] [--keep] DATA...\n",
                   argv[0]);
      return 2;
    }
  }
  const bool jsonl = data.size() == 1 && std::filesystem::path(data[0]).extension() == ".jsonl";
  for (const auto& f : data) {
    if (!std::filesystem::is_regular_file(f)) {
      std::fprintf(stderr, "%s: not a file\n", f.c_str());
      return 2;
    }
  }
  if (data.empty()) {
    std::fprintf(stderr, "DATA: give a JSONL file or fortune-format text files\n");
    return 2;
  }

  try {
    macrohard::ClientOptions options;
    options.base_url(env("MH_URL", "http://127.0.0.1:8080"))
        .api_key(env("MH_API_KEY"))
        .user_agent("finetune_and_deploy/1.0");
    if (!env("MH_CA_FILE").empty()) options.ca_file(env("MH_CA_FILE"));
    macrohard::Client client(options);

    // 1. The training data, as a file on the platform.
    std::filesystem::path upload = data[0];
    if (!jsonl) {
      upload = std::filesystem::temp_directory_path() /
               ("training." + std::to_string(::getpid()) + ".jsonl");
      std::ofstream out(upload);
      size_t n = 0;
      for (const auto& f : data) n += fortunes_to_jsonl(f, out);
      std::printf("%zu entries from %zu files\n", n, data.size());
    }
    const macrohard::File file = client.upload_file(upload.string(), "fine-tune");
    if (!jsonl) std::filesystem::remove(upload);
    std::printf("uploaded %s: %s (%llu bytes)\n", upload.filename().c_str(), file.id.c_str(),
                static_cast<unsigned long long>(file.bytes));

    // 2. Train, printing the loss as it falls.
    macrohard::FineTuningRequest request;
    request.model = model;
    request.training_file = file.id;
    request.n_epochs = epochs;
    request.batch_size = 8;
    request.learning_rate_multiplier = lr_multiplier;
    request.suffix = "sample";
    const auto started = std::chrono::steady_clock::now();
    macrohard::FineTuningJob job = client.create_fine_tuning_job(request);
    std::printf("training %s on %s: job %s\n", model.c_str(), file.id.c_str(), job.id.c_str());
    int64_t printed = -100;
    job = client.wait_fine_tuning_job(
        job.id,
        [&printed](const macrohard::JobEvent& e) {
          if (e.type == "metrics") {
            if (e.step >= printed + 25 || e.step == e.total_steps) {
              printed = e.step;
              std::printf("  step %4lld/%lld  loss %.3f\n", static_cast<long long>(e.step),
                          static_cast<long long>(e.total_steps), e.train_loss);
            }
          } else {
            std::printf("  %s\n", e.message.c_str());
          }
          std::fflush(stdout);
          return true;
        },
        std::chrono::milliseconds(250));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (job.status != "succeeded") {
      std::fprintf(stderr, "the job %s: %s\n", job.status.c_str(), job.error_message.c_str());
      return 1;
    }
    std::printf("trained %s in %.0f s\n", job.fine_tuned_model.c_str(), seconds);

    // 3. Deploy it and wait for a replica to be ready.
    macrohard::Deployment d = client.create_deployment(job.fine_tuned_model);
    d = client.wait_deployment(d.id);
    if (d.status != "ready") {
      std::fprintf(stderr, "deployment %s is %s: %s\n", d.id.c_str(), d.status.c_str(),
                   d.error.c_str());
      return 1;
    }
    std::printf("deployed as %s\n", d.id.c_str());

    // 4. Ask it something, the answer streaming in as it is generated.
    macrohard::CompletionRequest ask;
    ask.model = d.id;
    ask.prompt = prompt;
    ask.max_tokens = 60;
    ask.temperature = 0.8;
    // A small model sometimes ends its answer at once: a few seeds are tried quietly for one
    // with something to say (a seed gives the same answer again), and that one is streamed.
    ask.seed = 7;
    for (int64_t seed = 7; seed < 12; ++seed) {
      ask.seed = seed;
      if (client.complete(ask).completion_tokens >= 8) break;
    }
    std::printf("\n> %s", prompt.c_str());
    const macrohard::Completion answer = client.complete(ask, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::printf("\n\n(%lld prompt + %lld generated tokens, %s)\n",
                static_cast<long long>(answer.prompt_tokens),
                static_cast<long long>(answer.completion_tokens), answer.finish_reason.c_str());
    if (!keep) {
      client.delete_deployment(d.id);
      std::printf("deleted %s (the model %s stays)\n", d.id.c_str(), job.fine_tuned_model.c_str());
    }
    return 0;
  } catch (const macrohard::Error& e) {
    std::fprintf(stderr, "macrohard: %s (%s)\n", e.what(), e.code_name());
    return 1;
  }
}
