// `mhctl files …`: a tenant's files, through the SDK's typed calls. Uploads and downloads
// stream from and to disk, with a progress bar on a terminal.
#include <fmt/format.h>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "platform/base/time.h"
#include "platform/mhctl/admin_commands.h"
#include "platform/mhctl/progress.h"

namespace mh::cli {
namespace {

void print_file(const macrohard::File& f) {
  std::printf("%-30s %-10s %12s  %s  %s\n", f.id.c_str(), f.purpose.c_str(),
              human_bytes(static_cast<double>(f.bytes)).c_str(), rfc3339(f.created_at).c_str(),
              f.filename.c_str());
}

}  // namespace

void add_file_commands(CLI::App& app, std::function<macrohard::Client()> client, bool* json_out,
                       int* exit_code) {
  auto* files =
      app.add_subcommand("files", "your tenant's files: upload, list, get, download, delete");
  files->require_subcommand(1);
  struct Args {
    std::string path, purpose, id, out;
    std::string progress = "auto";
  };
  auto a = std::make_shared<Args>();
  auto bar_enabled = [a] { return progress_wanted(a->progress); };
  auto add_progress_flag = [a](CLI::App* cmd) { add_progress_option(cmd, a->progress); };

  auto* upload = files->add_subcommand("upload", "upload a file (streamed; any size)");
  upload->add_option("path", a->path, "the file to upload")->required()->check(CLI::ExistingFile);
  upload
      ->add_option("--purpose", a->purpose,
                   "fine-tune (JSONL) or model (weights, config, "
                   "tokenizer)")
      ->required();
  add_progress_flag(upload);
  upload->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      macrohard::File f;
      {
        ProgressBar bar(std::filesystem::path(a->path).filename().string(), bar_enabled());
        f = c.upload_file(a->path, a->purpose, bar.callback());
      }
      if (*json_out) {
        std::printf("%s\n", f.raw.json().c_str());
      } else {
        std::printf("uploaded %s: %s, %s, sha256 %s\n", f.id.c_str(), f.filename.c_str(),
                    human_bytes(static_cast<double>(f.bytes)).c_str(), f.sha256.c_str());
      }
      return 0;
    });
  });

  auto* list = files->add_subcommand("list", "list files");
  list->add_option("--purpose", a->purpose, "only files of this purpose");
  list->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      if (!*json_out) {
        std::printf("%-30s %-10s %12s  %-20s  %s\n", "ID", "PURPOSE", "SIZE", "CREATED", "NAME");
      }
      for_each_item([&](const std::string& after) { return c.list_files(a->purpose, after, 100); },
                    [&](const macrohard::File& f) {
                      if (*json_out) {
                        std::printf("%s\n", f.raw.json().c_str());
                      } else {
                        print_file(f);
                      }
                    });
      return 0;
    });
  });

  auto* get = files->add_subcommand("get", "show one file");
  get->add_option("id", a->id, "file id")->required();
  get->callback([=] {
    *exit_code = guarded([&] {
      std::printf("%s\n", client().get_file(a->id).raw.json().c_str());
      return 0;
    });
  });

  auto* download = files->add_subcommand("download", "download a file's content");
  download->add_option("id", a->id, "file id")->required();
  download->add_option("--out", a->out, "where to write it (default: its filename, here)");
  add_progress_flag(download);
  download->callback([=] {
    *exit_code = guarded([&] {
      auto c = client();
      std::string out = a->out;
      if (out.empty()) {
        out = std::filesystem::path(c.get_file(a->id).filename).filename().string();
        if (out.empty() || out == "." || out == "..") out = a->id;
      } else if (std::filesystem::is_directory(out)) {
        out = (std::filesystem::path(out) /
               std::filesystem::path(c.get_file(a->id).filename).filename())
                  .string();
      }
      {
        ProgressBar bar(std::filesystem::path(out).filename().string(), bar_enabled());
        c.download_file(a->id, out, bar.callback());
      }
      std::printf("wrote %s (%s)\n", out.c_str(),
                  human_bytes(static_cast<double>(std::filesystem::file_size(out))).c_str());
      return 0;
    });
  });

  auto* remove = files->add_subcommand("delete", "delete a file");
  remove->add_option("id", a->id, "file id")->required();
  remove->callback([=] {
    *exit_code = guarded([&] {
      client().delete_file(a->id);
      std::printf("deleted %s\n", a->id.c_str());
      return 0;
    });
  });
}

}  // namespace mh::cli
